"""Backoff: exponential, jittered, capped, validated; and the one retry rule."""

from __future__ import annotations

import pytest

from apitask import Backoff, TransientError
from apitask._backoff import next_delay
from apitask.mail import TransientMailError
from apitask.outbox import JobTimeoutError


def test_delays_double_and_stay_within_half_to_full_ceiling() -> None:
    """Attempt n waits between ceiling/2 and ceiling, ceiling = base * 2**(n-1)."""
    b = Backoff(base=1.0, cap=100.0)
    assert [b.delay(n, rng=lambda: 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert [b.delay(n, rng=lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]


def test_delay_is_capped_even_for_huge_attempt_numbers() -> None:
    """No overflow, no delay above the cap."""
    b = Backoff(base=0.5, cap=30.0)
    assert b.delay(10_000, rng=lambda: 1.0) == 30.0


def test_gives_up_after_max_attempts() -> None:
    """max_attempts counts the first try: 3 means two retries."""
    b = Backoff(max_attempts=3)
    assert [b.gives_up_after(n) for n in (1, 2, 3)] == [False, False, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base": 0}, "base must be > 0"),
        ({"base": 2.0, "cap": 1.0}, "cap must be >= base"),
        ({"max_attempts": 0}, "max_attempts must be >= 1"),
    ],
)
def test_bad_settings_are_refused_with_the_field_name(
    kwargs: dict[str, float], message: str
) -> None:
    """Invalid configuration fails when built, naming the field."""
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_attempt_numbers_start_at_one() -> None:
    """Attempt 0 is a caller bug, not a zero delay."""
    with pytest.raises(ValueError, match="start at 1"):
        Backoff().delay(0)


BACKOFF = Backoff(base=1.0, cap=8.0, max_attempts=4)


@pytest.mark.parametrize(
    ("exc", "attempt", "expected"),
    [
        (ValueError("permanent"), 1, None),
        (TimeoutError("the task's own"), 1, None),  # not a TransientError: final
        (TimeoutError("read"), 1, None),  # an alias of TimeoutError
        (TransientError("busy"), 4, None),  # attempts used up
        (TransientError("busy"), 1, 0.5),  # rng 0: half of base
        (TransientError("busy"), 3, 2.0),  # half of base * 2**2
        (TransientError("busy", retry_after=30.0), 1, 30.0),  # the server's word wins
        (TransientError("busy", retry_after=-1.0), 1, 0.0),
        (TransientError("busy", retry_after=30.0), 4, None),  # ... but not over max_attempts
        (JobTimeoutError("slow attempt"), 1, 0.5),  # the outbox's job timeout is transient
        (TransientMailError("421 try later"), 2, 1.0),  # subsystems' subclasses too
    ],
)
def test_next_delay_is_the_one_retry_rule(
    exc: Exception, attempt: int, expected: float | None
) -> None:
    """Only TransientError (and subclasses) retries, within max_attempts;
    retry_after wins over the backoff; a bare TimeoutError is final."""
    assert next_delay(exc, attempt, BACKOFF, lambda: 0.0) == expected

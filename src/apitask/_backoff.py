"""The one retry policy of apitask: what is retried, and after how long.

The worker pool and the outbox worker both ask :func:`next_delay`, so a
failure is retried (or not) the same way wherever the task runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._exceptions import TransientError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Backoff", "next_delay"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal" jitter, and a cap on attempts.

    The n-th retry waits between half and all of ``min(cap, base * 2**(n-1))``
    seconds: never less than half, so a burst of failures cannot turn into
    a burst of instant retries, and spread over the other half, so many
    failing tasks do not retry in lock-step.

    Args:
        base: ceiling of the first delay, in seconds.
        cap: largest delay, in seconds.
        max_attempts: attempts in all, the first one included (1 = no retry).
    """

    base: float = 0.5
    cap: float = 300.0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if not self.base > 0:
            raise ValueError(f"Backoff.base must be > 0 seconds, got {self.base!r}")
        if not self.cap >= self.base:
            raise ValueError(f"Backoff.cap must be >= base ({self.base}), got {self.cap!r}")
        if self.max_attempts < 1:
            raise ValueError(f"Backoff.max_attempts must be >= 1, got {self.max_attempts!r}")

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        # 2**(attempt-1) overflows a float near 1024: stop growing well before.
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt - 1, 64))
        return ceiling / 2 + rng() * ceiling / 2

    def gives_up_after(self, attempt: int) -> bool:
        """Whether failed attempt number ``attempt`` was the last one allowed."""
        return attempt >= self.max_attempts


def next_delay(
    exc: BaseException,
    attempt: int,
    backoff: Backoff,
    rng: Callable[[], float] = random.random,
) -> float | None:
    """Seconds before the next attempt after ``exc`` ended attempt ``attempt``, or None.

    None means the failure is final: the exception is not a
    :class:`~apitask.TransientError` (the class is the task's word that the
    failure may pass; a bare ``TimeoutError`` is not such a word), or
    ``backoff.max_attempts`` are used up. A ``retry_after`` the failing side
    asked for wins over the backoff.
    """
    if not isinstance(exc, TransientError) or backoff.gives_up_after(attempt):
        return None
    if exc.retry_after is not None:
        return max(0.0, exc.retry_after)
    return backoff.delay(attempt, rng)

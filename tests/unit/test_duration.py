"""apitask.parse_duration: Go's duration syntax, plus days and bare seconds."""

from __future__ import annotations

import pytest

from apitask import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # Go's time.ParseDuration
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("1.s", 1.0),
        (".5s", 0.5),
        ("-2m", -120.0),
        ("+1s", 1.0),
        ("250ms", 0.25),
        ("10us", 1e-5),
        ("10µs", 1e-5),  # MICRO SIGN
        ("10μs", 1e-5),  # GREEK SMALL LETTER MU
        ("1500ns", 1.5e-6),
        ("1h2m3s4ms", 3723.004),
        # what Go lacks: days, bare seconds, surrounding blanks
        ("7d", 604800.0),
        ("1d12h", 129600.0),
        ("0", 0.0),
        ("900", 900.0),
        ("1.5", 1.5),
        ("-30", -30.0),
        (" 30s\n", 30.0),
    ],
)
def test_durations_read_like_go_plus_days(text: str, seconds: float) -> None:
    """Go's syntax, d for days, and a bare number as seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", " ", "-", "+", "s", "1x", "10 s", "1m 30s", "m1", "1.2.3s", "1e3", "1_000", "nan", "inf"],
)
def test_anything_else_is_a_value_error(text: str) -> None:
    """Not a duration: a ValueError naming the input and the syntax to use."""
    with pytest.raises(ValueError, match=r"invalid duration .* \(use Go syntax such as 30s"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["2562048h", "-2562048h", "106752d", "9" * 400])
def test_durations_past_gos_range_are_refused(text: str) -> None:
    """Go's durations end at 2**63-1 nanoseconds (about 292 years) either way."""
    with pytest.raises(ValueError, match=r"\(out of range\)"):
        parse_duration(text)
    assert parse_duration("2562047h") == 2562047 * 3600.0

"""Durations as people write them in configuration: Go's syntax, plus days.

One grammar for every duration the project reads: the ``apitask`` command's
options (``--lease 30s``, ``--older-than 7d``) and apitask-auth's GoTrue
settings (``GOTRUE_WORKER_SHUTDOWN_DURATION=1m30s``, ``ban_duration``).
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration"]

# Go's time.ParseDuration units (µ as MICRO SIGN and as GREEK SMALL LETTER MU,
# both of which Go takes), plus d for days, which Go lacks and retention
# periods want. The longer unit comes first where one is a prefix of another.
_SECONDS_PER_UNIT = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h|d)")
_BARE = re.compile(_NUMBER)

# Go's time.Duration is an int64 of nanoseconds: about 292 years either way.
# Go answers "invalid duration" beyond it; Python would overflow later, in
# date arithmetic (a ban of 99999999999h), where it no longer reads as bad input.
_GO_MAX_SECONDS = (2**63 - 1) / 1e9


def parse_duration(text: str) -> float:
    """The seconds in a duration written as Go writes it, or with days.

    Accepted, around optional surrounding whitespace:

    - Go's ``time.ParseDuration`` syntax: an optional sign, then one or more
      decimal numbers each with a unit, ``ns``, ``us`` (or ``µs``), ``ms``,
      ``s``, ``m``, ``h``: ``30s``, ``1m30s``, ``1.5h``, ``-2m``, ``250ms``.
    - ``d`` for days (24 hours), which Go lacks: ``7d``, ``1d12h``.
    - A bare decimal number, read as seconds (``0``, ``900``, ``1.5``), as
      GoTrue configurations write settings documented in seconds.

    Not accepted: exponents (``1e3``), ``nan`` and ``inf``, spaces between
    parts, and durations past Go's range (about 292 years either way).

    Args:
        text: the duration.

    Returns:
        The duration in seconds (negative for a leading ``-``).

    Raises:
        ValueError: ``text`` is not a duration, or is out of range.

    Example::

        >>> parse_duration("1h30m"), parse_duration("7d"), parse_duration("500ms")
        (5400.0, 604800.0, 0.5)
    """
    body = text.strip()
    sign = -1.0 if body[:1] == "-" else 1.0
    if body[:1] in ("+", "-"):
        body = body[1:]
    if _BARE.fullmatch(body):
        seconds = float(body)
    else:
        seconds, position = 0.0, 0
        for part in _PART.finditer(body):
            if part.start() != position:
                break
            seconds += float(part[1]) * _SECONDS_PER_UNIT[part[2]]
            position = part.end()
        if not body or position != len(body):
            raise ValueError(f"invalid duration {text!r} (use Go syntax such as 30s or 1m30s)")
    if not math.isfinite(seconds) or seconds > _GO_MAX_SECONDS:
        raise ValueError(f"invalid duration {text!r} (out of range)")
    return sign * seconds

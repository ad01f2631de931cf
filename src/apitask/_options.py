"""The options of a request scope, checked: ``wait``, ``sink``, ``timeout``.

:func:`apitask.scope` and both middlewares take them.

Bad configuration fails where it is written, with the option's name in the
message, not on the first request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from ._types import TaskSink

__all__ = ["WaitMode", "check_sink", "check_timeout", "check_wait"]

WaitMode = Literal["before_response", "after_response"]
"""When a middleware waits for the tasks of a request (see docs/core.md)."""

_WAIT_MODES: tuple[str, ...] = get_args(WaitMode)


def check_wait(wait: object) -> WaitMode:
    """Return ``wait`` if it names a wait mode, else raise ValueError naming it."""
    if wait == "before_response":
        return "before_response"
    if wait == "after_response":
        return "after_response"
    raise ValueError(f"wait must be one of {', '.join(map(repr, _WAIT_MODES))}, got {wait!r}")


def check_timeout(timeout: object) -> float | None:
    """Return ``timeout`` (seconds, positive, or None for no deadline)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if not timeout > 0:  # also refuses NaN
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    return float(timeout)


def check_sink(sink: object) -> TaskSink | None:
    """Return ``sink`` if it has the TaskSink methods (or is None)."""
    if sink is None:
        return None
    missing = [
        name for name in ("submit", "submit_sync") if not callable(getattr(sink, name, None))
    ]
    if missing:
        raise TypeError(
            f"sink must be a TaskSink (submit and submit_sync), {sink!r} lacks {', '.join(missing)}"
        )
    return sink  # type: ignore[return-value]

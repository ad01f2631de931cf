"""Checks shared by every entry point that takes scope options (scope, middlewares).

Bad configuration fails where it is written, with the option's name in the
message, not on the first request.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Generic, Literal, TypeVar, get_args

if TYPE_CHECKING:
    from ._types import TaskSink

__all__ = [
    "ScopeMiddleware",
    "WaitMode",
    "check_sink",
    "check_timeout",
    "check_wait",
    "request_id",
]

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


AppT = TypeVar("AppT")


class ScopeMiddleware(Generic[AppT]):
    """What the ASGI and the WSGI middleware share: the app and the checked options."""

    def __init__(
        self,
        app: AppT,
        *,
        wait: WaitMode = "before_response",
        sink: TaskSink | None = None,
        timeout: float | None = None,
    ) -> None:
        self.app = app
        self.wait: WaitMode = check_wait(wait)
        self.sink = check_sink(sink)
        self.timeout = check_timeout(timeout)


def request_id(header: str | None) -> str:
    """The request id a client or proxy sent, if it is safe to log; else a fresh one.

    The header is the client's to choose: one with control characters (a
    forged log line) or of absurd length is replaced, not logged.
    """
    if header and len(header) <= 200 and header.isprintable():
        return header
    return f"{_id_prefix}{next(_id_counter):016x}"


# A fresh id is a per-process random prefix and a counter: unique without a
# getrandom() system call per request (ids need to be unique, not secret).
# A forked child must not repeat its parent's ids, so it draws a new prefix.
_id_prefix = os.urandom(8).hex()
_id_counter = itertools.count()


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(8).hex()
    _id_counter = itertools.count()


os.register_at_fork(after_in_child=_new_id_prefix)

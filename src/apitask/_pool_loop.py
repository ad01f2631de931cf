"""Event-loop plumbing of the worker pool: wake-ups and crossing threads."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from ._exceptions import PoolClosedError

if TYPE_CHECKING:
    import concurrent.futures
    from collections import deque
    from collections.abc import Coroutine

__all__ = ["hand_over", "no_running_loop", "wake_all", "wake_one"]

T = TypeVar("T")


def wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    """Wake the first waiter that still waits (FIFO)."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    """Wake every waiter that still waits, and empty the deque."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():  # a waiter that gave up stays in the deque until here
            waiter.set_result(None)


def no_running_loop(method: str, instead: str) -> None:
    """Raise RuntimeError if this thread runs an event loop that ``method`` would block."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{method}() would block the event loop of this thread; {instead}")


def hand_over(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], what: str
) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the pool's loop from another thread."""
    try:
        return asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError as exc:  # the loop is closed: the pool died without aclose
        coro.close()
        raise PoolClosedError(f"cannot {what}: the worker pool's event loop is closed") from exc

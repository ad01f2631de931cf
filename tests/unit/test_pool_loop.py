"""The pool's event-loop plumbing: wake-ups."""

from __future__ import annotations

import asyncio
from collections import deque

from apitask._pool_loop import wake_all, wake_one


async def test_wake_helpers_skip_waiters_that_gave_up() -> None:
    """A cancelled waiter left in the deque is dropped, never woken twice or raised on."""
    loop = asyncio.get_running_loop()
    gave_up, waiting = loop.create_future(), loop.create_future()
    gave_up.cancel()
    waiters = deque([gave_up])
    wake_one(waiters)
    assert not waiters
    waiters = deque([gave_up, waiting])
    wake_all(waiters)
    assert not waiters and waiting.result() is None

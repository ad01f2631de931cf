"""The last N caught messages, in memory: bounded, thread-safe, awaitable.

Writers may be on any thread (the SMTP server runs on the app's loop, tests and
sync code may add from elsewhere), so state sits behind a ``threading.Lock``
held only for list operations. Waiters are futures on their own loops, woken
with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Caught", "CaughtT", "MessageStore"]


class Caught(Protocol):
    """What the store keeps: a caught mail or a caught text."""

    @property
    def id(self) -> str:
        """The inbox's id for it."""
        ...

    def recipients(self) -> set[str]:
        """Whom it was for, lower-cased (addresses, numbers)."""
        ...


# What one store holds: caught mail (CaughtMessage) or caught texts (CaughtText).
CaughtT = TypeVar("CaughtT", bound=Caught)


class MessageStore(Generic[CaughtT]):
    """Keeps the newest ``max_messages`` messages (mails or texts); the oldest fall off."""

    def __init__(self, max_messages: int) -> None:
        if isinstance(max_messages, bool) or not isinstance(max_messages, int):
            raise TypeError(f"max_messages must be an int, got {max_messages!r}")
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._messages: deque[CaughtT] = deque(maxlen=max_messages)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def add(self, message: CaughtT) -> None:
        """Store a message (dropping the oldest when full) and wake every waiter."""
        with self._lock:
            self._messages.append(message)
            waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def select(self, *, to: str | None = None) -> list[CaughtT]:
        """Messages newest first, optionally only those for address ``to``."""
        with self._lock:
            messages = list(reversed(self._messages))
        if to is None:
            return messages
        wanted = to.strip().lower()
        return [message for message in messages if wanted in message.recipients()]

    def get(self, message_id: str) -> CaughtT | None:
        """The message with this id, or None when unknown or already dropped."""
        with self._lock:
            return next((m for m in self._messages if m.id == message_id), None)

    def clear(self) -> int:
        """Forget every message; return how many there were."""
        with self._lock:
            count = len(self._messages)
            self._messages.clear()
        return count

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    async def wait_for(
        self, predicate: Callable[[], list[CaughtT]], timeout: float
    ) -> list[CaughtT]:
        """Return ``predicate()`` once it is non-empty, or its empty result after ``timeout`` s.

        The predicate is re-evaluated after every ``add``; registering the waiter
        before evaluating it means an arrival in between is never missed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            future: asyncio.Future[None] = loop.create_future()
            entry = (loop, future)
            with self._lock:
                self._waiters.add(entry)
            try:
                found = predicate()
                remaining = deadline - loop.time()
                if found or remaining <= 0:
                    return found
                try:
                    await asyncio.wait_for(future, remaining)
                except TimeoutError:
                    return predicate()
            finally:
                with self._lock:
                    self._waiters.discard(entry)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

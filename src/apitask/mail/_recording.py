"""The recording client: keeps what it is sent, for tests and local development."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._message import Message

__all__ = ["RecordingClient"]


class _Waiter:
    __slots__ = ("future", "loop", "matches")

    def __init__(self, matches: Callable[[Message], bool]) -> None:
        self.matches = matches
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Message] = self.loop.create_future()

    def wake(self, message: Message) -> None:
        # Called from send(), which may run on another loop or thread (a
        # pool's, apitask's background loop): a future is only ever resolved
        # on its own loop.
        if asyncio.get_running_loop() is self.loop:
            _resolve(self.future, message)
        else:
            self.loop.call_soon_threadsafe(_resolve, self.future, message)


def _resolve(future: asyncio.Future[Message], message: Message) -> None:
    if not future.done():  # the waiter may have timed out meanwhile
        future.set_result(message)


class RecordingClient:
    """Keep every sent message in memory, for tests and local development.

    ``send`` records and returns; :meth:`wait_for` waits until a matching
    message has been sent, so a test can assert on mail that a background
    task sends, without sleeping. Safe to share between event loops and
    threads (a worker pool's loop, apitask's background loop, the test's).

    Args:
        max_messages: how many messages the history keeps; older ones are
            forgotten first.
    """

    __slots__ = ("_history", "_lock", "_waiters")

    def __init__(self, *, max_messages: int = 1000) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages!r}")
        self._history: deque[Message] = deque(maxlen=max_messages)
        self._waiters: list[_Waiter] = []
        self._lock = threading.Lock()

    @property
    def messages(self) -> list[Message]:
        """The recorded messages, oldest first (a copy)."""
        with self._lock:
            return list(self._history)

    def clear(self) -> None:
        """Forget every recorded message."""
        with self._lock:
            self._history.clear()

    async def send(self, message: Message) -> None:
        """Record ``message`` and wake whoever waits for one like it."""
        with self._lock:
            self._history.append(message)
            woken = [waiter for waiter in self._waiters if waiter.matches(message)]
            for waiter in woken:
                self._waiters.remove(waiter)
        for waiter in woken:
            waiter.wake(message)

    async def wait_for(
        self,
        predicate: Callable[[Message], bool] | None = None,
        *,
        to: str | None = None,
        type: str | None = None,
        timeout: float = 5.0,
    ) -> Message:
        """Return a matching message: the latest one recorded, else the next one sent.

        A message matches when it satisfies ``predicate`` (if given), is
        addressed to ``to`` (compared case-insensitively, if given) and is of
        ``type`` (if given).

        Raises:
            TimeoutError: no matching message within ``timeout`` seconds
                (the message says how many were recorded, and of which types).
        """

        def matches(message: Message) -> bool:
            return (
                (to is None or message.to.lower() == to.lower())
                and (type is None or message.type == type)
                and (predicate is None or predicate(message))
            )

        waiter = _Waiter(matches)
        with self._lock:
            for message in reversed(self._history):
                if matches(message):
                    return message
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter.future
        except TimeoutError:
            seen = self.messages
            types = sorted({message.type for message in seen})
            raise TimeoutError(
                f"no matching mail within {timeout}s "
                f"(to={to!r}, type={type!r}, predicate={predicate!r}); "
                f"{len(seen)} recorded, of types {types}"
            ) from None
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

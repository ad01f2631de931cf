"""Reused SMTP connections: at most ``size`` of them, idle ones kept warm for a while.

A connection is either checked out by one send (it holds one of ``size``
slots) or idle in a stack; so there are never more than ``size``
connections. The stack is last-in first-out: the warmest connection is
reused first and the others age out. Each idle connection carries a timer
that retires it (QUIT) after ``idle_timeout``, so nothing lingers open on
the server; a connection that has carried ``max_messages`` is retired
instead of going back. A connection the server closed while idle is seen
as disconnected at checkout and dropped without a round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosmtplib

from .._errors import TransientMailError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Connection", "ConnectionPool"]


@dataclass(eq=False, slots=True)
class Connection:
    """One open aiosmtplib connection and what the pool knows about it."""

    smtp: aiosmtplib.SMTP
    messages: int = 0
    expiry: asyncio.TimerHandle | None = None


class ConnectionPool:
    """The connections of one :class:`SMTPClient`; see the module docstring."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[aiosmtplib.SMTP]],
        *,
        size: int,
        idle_timeout: float,
        max_messages: int,
        quit_timeout: float,
    ) -> None:
        self._connect = connect
        self._idle_timeout = idle_timeout
        self._max_messages = max_messages
        self._quit_timeout = quit_timeout
        self.slots = asyncio.Semaphore(size)
        self._idle: list[Connection] = []
        self._busy: set[Connection] = set()
        self._quitting: set[asyncio.Task[None]] = set()
        self._closing = False
        self._aborted = False
        self.opened = 0
        """Connections opened so far."""
        self.closed = 0
        """Connections closed so far (by QUIT, by us, or by the server)."""

    @property
    def idle(self) -> int:
        """How many connections wait, open, for the next send."""
        return len(self._idle)

    async def checkout(self) -> Connection:
        """An open connection: the most recently used idle one, or a new one.

        The caller must hold one of :attr:`slots`.

        Raises:
            MailError: connecting failed (classified), or the pool was aborted.
        """
        if self._aborted:
            raise TransientMailError("the SMTP client was closed while this mail waited")
        while self._idle:
            connection = self._idle.pop()
            self._cancel_expiry(connection)
            if connection.smtp.is_connected:
                self._busy.add(connection)
                return connection
            self.closed += 1  # the server closed it while it was idle
        connection = Connection(await self._connect())
        self.opened += 1
        self._busy.add(connection)
        return connection

    def checkin(self, connection: Connection) -> None:
        """Give back a connection in a clean state (no open mail transaction)."""
        self._busy.discard(connection)
        if (
            self._closing
            or connection.messages >= self._max_messages
            or not connection.smtp.is_connected
        ):
            self._retire(connection)
            return
        loop = asyncio.get_running_loop()
        connection.expiry = loop.call_later(self._idle_timeout, self._expire, connection)
        self._idle.append(connection)

    def discard(self, connection: Connection) -> None:
        """Close a connection whose state is unknown or broken, without QUIT."""
        self._busy.discard(connection)
        connection.smtp.close()
        self.closed += 1

    def begin_close(self) -> None:
        """Take no connection back from now on, and retire the idle ones."""
        self._closing = True
        while self._idle:
            connection = self._idle.pop()
            self._cancel_expiry(connection)
            self._retire(connection)

    def abort(self) -> None:
        """Close the busy connections too: their sends fail as transient."""
        self._aborted = True
        for connection in list(self._busy):
            self.discard(connection)

    async def wait_closed(self) -> None:
        """Wait until every QUIT under way has finished."""
        while self._quitting:
            await asyncio.gather(*self._quitting)

    def _expire(self, connection: Connection) -> None:
        connection.expiry = None
        self._idle.remove(connection)
        self._retire(connection)

    @staticmethod
    def _cancel_expiry(connection: Connection) -> None:
        assert connection.expiry is not None  # every idle connection has its timer
        connection.expiry.cancel()
        connection.expiry = None

    def _retire(self, connection: Connection) -> None:
        if not connection.smtp.is_connected:
            self.closed += 1
            return
        task = asyncio.create_task(self._quit(connection))
        self._quitting.add(task)
        task.add_done_callback(self._quitting.discard)

    async def _quit(self, connection: Connection) -> None:
        # A polite QUIT; if the server is slow or already gone, just close.
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await connection.smtp.quit(timeout=self._quit_timeout)
        connection.smtp.close()
        self.closed += 1

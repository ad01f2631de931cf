"""DevInbox: an SMTP catcher on the app's event loop plus the router that shows its mail.

Why the app's own loop and not aiosmtpd's ``Controller`` (a second loop in a
thread): ``Controller.start()``/``stop()`` block (a thread join and a blocking
readiness probe over smtplib), which the service would have to push to a thread
at startup; a server on the running loop starts and stops with plain awaits,
binds port 0 and reads the real port straight from its socket, and needs no
thread handover for storing what it parses. The one thing it cannot serve is a
client that blocks the same loop while it sends: the service never does (its
mail clients are async), and anything in another process or thread is fine.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any, Self

from aiosmtpd.smtp import SMTP

from ._message import CaughtMessage, parse_message
from ._router import build_router
from ._store import CaughtT, MessageStore
from ._text import CaughtText

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from fastapi import APIRouter

__all__ = ["DevInbox"]

_HOSTNAME = "apitask-dev-inbox"  # fixed, so aiosmtpd never calls socket.getfqdn() on the loop


class DevInbox:
    """An embedded SMTP catcher whose mail is readable over HTTP.

    Usage (dev mode only)::

        inbox = DevInbox(max_messages=500)
        app.include_router(inbox.router)  # /_dev/inbox, /_dev/inbox/messages, ...
        host, port = await inbox.start()  # point the SMTP client here
        ...
        await inbox.stop()

    Args:
        max_messages: How many messages to keep; the oldest are dropped first.
        host: Interface the SMTP server binds (keep it on loopback).
        port: SMTP port; 0 picks a free one (read it from :meth:`start`).
        prefix: URL path the router serves under.
        max_message_size: Largest message accepted, in bytes (bigger gets 552).

    Raises:
        TypeError: ``max_messages`` or ``port`` is not an int.
        ValueError: A size, port or prefix is out of range.
    """

    def __init__(
        self,
        *,
        max_messages: int = 500,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "/_dev/inbox",
        max_message_size: int = 10 * 1024 * 1024,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, got {port!r}")
        if not 0 <= port < 65536:
            raise ValueError(f"port must be from 0 to 65535, got {port}")
        if max_message_size < 1:
            raise ValueError(f"max_message_size must be positive, got {max_message_size}")
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"prefix must start with '/' and not end with one, got {prefix!r}")
        self._store: MessageStore[CaughtMessage] = MessageStore(max_messages)
        # Texts beside the mail: what the SMS chain sends in dev mode without a provider.
        self._texts: MessageStore[CaughtText] = MessageStore(max_messages)
        self._host = host
        self._port = port
        self._max_message_size = max_message_size
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self.router: APIRouter = build_router(
            self._store, self._texts, lambda: self._address, prefix=prefix
        )
        """FastAPI router with the inbox page and JSON API; include it only in dev mode."""

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) the SMTP server listens on, or None when not running."""
        return self._address

    @property
    def max_messages(self) -> int:
        """How many messages are kept."""
        return self._store.max_messages

    async def start(self) -> tuple[str, int]:
        """Start listening for SMTP on this loop; return the (host, port) to send to.

        Raises:
            RuntimeError: The inbox is already running.
            OSError: The address cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("DevInbox is already started")
        loop = asyncio.get_running_loop()
        handler = _CatchingHandler(self._store)

        def protocol() -> SMTP:
            connection = SMTP(
                handler,
                hostname=_HOSTNAME,
                data_size_limit=self._max_message_size,
                enable_SMTPUTF8=True,
                loop=loop,
            )
            self._connections.add(connection)
            return connection

        self._server = await loop.create_server(protocol, self._host, self._port)
        host, port = self._server.sockets[0].getsockname()[:2]
        self._address = (host, port)
        return self._address

    async def stop(self) -> None:
        """Stop the SMTP server and drop open client connections; the mail is kept."""
        server, self._server, self._address = self._server, None, None
        if server is None:
            return
        server.close()
        # Pooled SMTP clients keep idle connections open; close them so
        # wait_closed() (which waits for every connection on 3.12+) returns.
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def messages(self, *, to: str | None = None) -> list[CaughtMessage]:
        """Caught messages, newest first; ``to`` keeps those for one address."""
        return self._store.select(to=to)

    def get(self, message_id: str) -> CaughtMessage | None:
        """One caught message by its id, or None."""
        return self._store.get(message_id)

    def clear(self) -> int:
        """Forget every caught message and text; return how many there were."""
        return self._store.clear() + self._texts.clear()

    def add(
        self, raw: bytes, *, envelope_from: str = "", envelope_to: Sequence[str] = ()
    ) -> CaughtMessage:
        """Store a message as if it had arrived over SMTP (for code that bypasses SMTP)."""
        message = parse_message(raw, envelope_from=envelope_from, envelope_to=envelope_to)
        self._store.add(message)
        return message

    def add_text(self, to: str, text: str, *, channel: str = "sms") -> CaughtText:
        """Store a text message (``to``: E.164 with or without its ``+``); return it."""
        caught = CaughtText(to=f"+{to.removeprefix('+')}", text=text, channel=channel)
        self._texts.add(caught)
        return caught

    def texts(self, *, to: str | None = None) -> list[CaughtText]:
        """Caught texts, newest first; ``to`` keeps those for one number."""
        return self._texts.select(to=to)

    async def wait_for_text(self, *, to: str | None = None, timeout: float = 10.0) -> CaughtText:
        """The newest text (for ``to``, when given) once one is there.

        Raises:
            TimeoutError: None arrived within ``timeout`` seconds.
        """
        return await _newest(self._texts, to, timeout, "text")

    async def wait_for(self, *, to: str | None = None, timeout: float = 10.0) -> CaughtMessage:
        """The newest message (for ``to``, when given) once one is there.

        Raises:
            TimeoutError: None arrived within ``timeout`` seconds.
        """
        return await _newest(self._store, to, timeout, "message")


async def _newest(
    store: MessageStore[CaughtT], to: str | None, timeout: float, what: str
) -> CaughtT:
    """The newest of ``store`` (for ``to``) once one is there, else TimeoutError."""
    found = await store.wait_for(lambda: store.select(to=to), timeout)
    if not found:
        raise TimeoutError(f"no {what} for {to or 'anyone'} within {timeout} s")
    return found[0]


class _CatchingHandler:
    """aiosmtpd handler: accept every recipient, parse and store every message."""

    def __init__(self, store: MessageStore[CaughtMessage]) -> None:
        self._store = store

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or b""
        # Parsing a large message takes a while: keep it off the loop.
        message = await asyncio.to_thread(
            parse_message,
            raw,
            envelope_from=envelope.mail_from or "",
            envelope_to=list(envelope.rcpt_tos),
        )
        self._store.add(message)
        return f"250 OK: caught as {message.id}"

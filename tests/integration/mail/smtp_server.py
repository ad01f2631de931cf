"""A real SMTP server in the test's own event loop: aiosmtpd, scripted per test.

``start_server(**options)`` (behind the ``mail_server`` fixture) starts
aiosmtpd's SMTP protocol with ``loop.create_server`` on a free port of
127.0.0.1 (no thread, no port guessing) and returns a :class:`MailServer`
that records every accepted message and every connection. A test scripts
what the server does next for MAIL, RCPT, DATA, RSET or QUIT with
:meth:`MailServer.script`: a reply line, DROP (close the connection without
a reply) or STALL (no reply until ``handler.release`` is set or the server
closes). ``options`` go to aiosmtpd's ``SMTP`` (``tls_context``,
``authenticator``, ``enable_SMTPUTF8``...); ``ssl`` makes it implicit TLS.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword

from apitask.mail import Message, SMTPClient

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

DROP = "DROP"
"""Scripted action: close the connection instead of replying."""
STALL = "STALL"
"""Scripted action: never reply (until the test ends)."""

USERNAME, PASSWORD = "mailer", "s3cret"


class Handler:
    """aiosmtpd hooks: accept everything unless a test scripted otherwise."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.tls: list[bool] = []
        """Per accepted message: whether its session was encrypted."""
        self.commands: list[str] = []
        self.scripts: dict[str, deque[str]] = defaultdict(deque)
        self.release = asyncio.Event()
        """Set it to end every STALL."""
        self.changed = asyncio.Event()
        """Set on every command and connection change (see MailServer.wait_until)."""

    async def _scripted(self, server: SMTP, command: str, default: str | None) -> str | None:
        self.commands.append(command)
        self.changed.set()
        if not self.scripts[command]:
            return default
        action = self.scripts[command].popleft()
        if action == DROP:
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            return default
        if action == STALL:
            await self.release.wait()
            return default
        return action

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await self._scripted(server, "MAIL", None)
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await self._scripted(server, "RCPT", None)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        script = self.scripts["DATA"]
        if script and script[0] not in (DROP, STALL):
            return await self._scripted(server, "DATA", None) or "250 OK"
        self.envelopes.append(envelope)  # the server has the message, whatever follows
        assert server.transport is not None
        self.tls.append(server.transport.get_extra_info("ssl_object") is not None)
        return await self._scripted(server, "DATA", "250 OK accepted") or "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        return await self._scripted(server, "QUIT", "221 Bye") or "221 Bye"

    async def handle_RSET(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        return await self._scripted(server, "RSET", "250 OK") or "250 OK"


@dataclass
class MailServer:
    """One running test server and what it saw."""

    host: str
    port: int
    handler: Handler
    connections: int = 0
    """Connections accepted so far."""
    open: int = 0
    """Connections open now."""
    protocols: set[SMTP] = field(default_factory=set)
    server: asyncio.Server | None = None

    @property
    def messages(self) -> list[bytes]:
        """The delivered message bytes, in order (dot-stuffing undone)."""
        return [bytes(e.original_content or b"") for e in self.handler.envelopes]

    def script(self, command: str, *actions: str) -> None:
        """Queue what the server does at the next ``command`` (MAIL, RCPT, DATA, RSET, QUIT)."""
        self.handler.scripts[command].extend(actions)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checked at each command or connection change."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.handler.changed.clear()
                await self.handler.changed.wait()

    def drop_all(self) -> None:
        """Close every open connection from the server side."""
        for protocol in list(self.protocols):
            if protocol.transport is not None:
                protocol.transport.close()

    async def close(self) -> None:
        """End every STALL, close every connection, stop listening."""
        self.handler.release.set()
        assert self.server is not None
        self.server.close()
        self.drop_all()
        await self.server.wait_closed()


async def start_server(
    ssl: ssl.SSLContext | None = None, pipelining: str | None = None, **options: Any
) -> MailServer:
    """Start aiosmtpd on a free port of 127.0.0.1 (``ssl`` = implicit TLS).

    aiosmtpd reads pipelined commands but does not say so. ``pipelining``:
    ``"offer"`` adds PIPELINING to its EHLO reply; ``"require"`` also holds
    the replies to MAIL and RCPT until DATA is answered, then sends them
    together, as a server may (RFC 2920): a client that waits for each reply
    before its next command gets none. ``"careless"``: as ``"require"``,
    and DATA is taken (354) even when every recipient was refused.

    Besides the scripts of :class:`Handler`, ``"DATA command"`` scripts the
    reply to the DATA command itself (the reply after the message is
    ``"DATA"``'s).
    """
    handler = Handler()
    state = MailServer("127.0.0.1", 0, handler)

    class Counted(SMTP):
        _held: list[str] | None = None
        _answering_data = False

        async def push(self, status: Any) -> None:
            if pipelining and status == "250 HELP":  # the last line of the EHLO reply
                await super().push("250-PIPELINING")
            if self._held is None:
                await super().push(status)
                return
            self._held.append(status)
            if self._answering_data:
                held, self._held, self._answering_data = self._held, None, False
                for line in held:
                    await super().push(line)

        async def smtp_MAIL(self, arg: str) -> None:
            if pipelining in ("require", "careless"):
                self._held = []
            await super().smtp_MAIL(arg)

        async def smtp_DATA(self, arg: str) -> None:
            self._answering_data = self._held is not None
            refusal = handler.scripts["DATA command"]
            if refusal:
                await self.push(refusal.popleft())
                return
            assert self.envelope is not None
            if pipelining == "careless" and not self.envelope.rcpt_tos:
                self.envelope.rcpt_tos.append("nobody@mx.test")
            await super().smtp_DATA(arg)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            state.connections += 1
            state.open += 1
            state.protocols.add(self)
            handler.changed.set()

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            if self in state.protocols:
                state.protocols.discard(self)
                state.open -= 1
                handler.changed.set()

    loop = asyncio.get_running_loop()
    state.server = await loop.create_server(
        lambda: Counted(handler, hostname="mx.test", loop=loop, **options),
        "127.0.0.1",
        0,
        ssl=ssl,
    )
    state.port = state.server.sockets[0].getsockname()[1]
    return state


def authenticate(
    server: SMTP, session: Any, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    """Accept exactly USERNAME / PASSWORD."""
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USERNAME.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


SENDER = "Acme <no-reply@acme.example>"


def client_for(server: MailServer, **options: Any) -> SMTPClient:
    """A client for ``server``: no TLS, a fixed EHLO name, 5 s steps; ``options`` win."""
    settings: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "sender": SENDER,
        "tls": "none",
        "local_hostname": "client.test",
        "timeout": 5.0,
    }
    return SMTPClient(**(settings | options))


def message(n: int = 0, **fields: Any) -> Message:
    """Message number ``n`` (text with a leading-dot line, and HTML); ``fields`` win."""
    base: dict[str, Any] = {
        "to": f"user{n}@example.org",
        "subject": f"Hello {n}",
        "text": f"text {n}\n.leading dot\n",
        "html": f"<p>html {n}</p>",
    }
    return Message(**(base | fields))

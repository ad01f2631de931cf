"""SMTPClient: a :class:`MailClient` that delivers over a pool of reused connections.

One send is one mail transaction (MAIL, RCPT, DATA) on a connection checked
out of the pool (see ``_smtp_pool``), pipelined when the server offers it
(see ``_pipeline``), and in one round trip with BDAT when it offers CHUNKING
too (see ``_chunking``). Every step has a deadline of
``timeout`` seconds, which aiosmtplib applies to each of them: the TCP (and
TLS) connect, the greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, RSET and
QUIT. aiosmtplib closes a connection whose reply timed out; it is never
reused.

Retrying inside the client, and why only there: a connection that was idle
may have been closed by the server in the meantime; that shows as a drop (or
a 421 reply) at the first command. Before DATA the server has accepted
nothing, so the send is retried once on a fresh connection. Once DATA has
begun, or a BDAT chunk has gone out, a drop is ambiguous (the server may have
queued the mail before the connection broke), so the client never resends
(see ``Steps.may_resend``): the error is transient, the
caller's retry policy decides, and the fixed Message-ID lets a receiver
recognise a duplicate.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

import aiosmtplib

from ..._histogram import Histogram
from .._errors import InvalidMessageError, MailError, PermanentMailError, TransientMailError
from .._task import log_fields
from ._chunking import send_chunked
from ._errors import is_drop, mail_error, raise_mail_error
from ._mime import parse_sender, render
from ._pipeline import Steps, send_pipelined
from ._pool import ConnectionPool
from ._raw import raw_envelope

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from types import TracebackType

    from .._message import Message
    from ._mime import Envelope
    from ._pool import Connection
    from ._raw import RawEnvelope

__all__ = ["SMTPClient", "SMTPCounters", "TLSMode"]

TLSMode = Literal["auto", "starttls", "implicit", "none"]
"""How the client secures its connections (see :class:`SMTPClient`)."""

T = TypeVar("T")

_TLS_MODES = ("auto", "starttls", "implicit", "none")
_DEFAULT_PORTS = {"implicit": 465, "starttls": 587}


@dataclass
class SMTPCounters:
    """What an :class:`SMTPClient` did, for logs, tests and metrics.

    Attributes:
        sent: mails the server accepted.
        transient: sends that failed in a way that may pass (4xx, drop, timeout).
        permanent: sends that failed for good (5xx, missing server feature).
        invalid: mails refused before any I/O because they cannot be written.
        retries: sends retried on a fresh connection after a drop before DATA.
        send_seconds: total wall time of the successful sends.
        send_latency: the wall time of each successful send, by bucket
            (exported as ``apitask_smtp_send_seconds`` by the Prometheus collector).
    """

    sent: int = 0
    transient: int = 0
    permanent: int = 0
    invalid: int = 0
    retries: int = 0
    send_seconds: float = 0.0
    send_latency: Histogram = field(default_factory=Histogram)


class SMTPClient:
    """Send :class:`Message` objects over a pool of reused SMTP connections.

    Args:
        host: the SMTP server.
        port: its port; by default 465 for ``tls="implicit"``, 587 for
            ``"starttls"``, 25 otherwise.
        sender: the From address, optionally with a display name
            (``"Acme <no-reply@acme.test>"``); checked here, once.
        pool_size: the most connections open (and sends in progress) at once.
        username, password: AUTH credentials (aiosmtplib picks the method the
            server offers); no AUTH when ``username`` is ``None``.
        tls: ``"auto"`` (the default, what GoTrue does): implicit TLS on port
            465, else STARTTLS when the server offers it and plain text when
            it does not, which an active attacker can force, so prefer
            ``"starttls"`` (STARTTLS required) when the server supports it;
            ``"implicit"``: TLS from the first byte; ``"none"``: never TLS.
        tls_context: the SSL context for TLS; by default the system's trusted
            CAs with host name checks (built once, off the event loop).
        timeout: seconds allowed for each step: connect, greeting, EHLO,
            STARTTLS, AUTH, MAIL, RCPT, DATA, RSET and QUIT.
        idle_timeout: seconds an unused connection stays open before QUIT.
        max_messages_per_connection: QUIT a connection after this many mails.
        local_hostname: the EHLO name (GoTrue: the API_EXTERNAL_URL host);
            by default this host's FQDN, looked up once, off the loop.
        logger: where to log; ``apitask.mail.smtp`` by default.
        log_sends: log a ``mail.send`` line per delivered mail (type, sender,
            recipient's domain, Message-ID), as GoTrue does with
            ``GOTRUE_SMTP_LOGGING_ENABLED`` (GoTrue's names the address).
        pipelining: when the server offers ESMTP PIPELINING (RFC 2920),
            send ``MAIL``, ``RCPT`` and ``DATA`` in one write (two round
            trips per mail instead of four); every reply is still checked,
            and errors and retries are the same. ``False`` never pipelines.
        chunking: when the server offers CHUNKING (RFC 3030) as well as
            PIPELINING, send ``MAIL``, ``RCPT`` and ``BDAT <size> LAST``
            with the message in one write: one round trip per mail. Every
            reply is still checked; a drop after the message went out is
            not resent. By default as ``pipelining``; ``False`` sends with
            DATA.

    Raises:
        InvalidMessageError: ``sender`` is not one safe address.
        ValueError: a setting is out of range or contradicts another
            (``chunking=True`` needs ``pipelining=True``).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int | None = None,
        sender: str,
        pool_size: int = 4,
        username: str | None = None,
        password: str | None = None,
        tls: TLSMode = "auto",
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        idle_timeout: float = 10.0,
        max_messages_per_connection: int = 100,
        local_hostname: str | None = None,
        logger: logging.Logger | None = None,
        log_sends: bool = False,
        pipelining: bool = True,
        chunking: bool | None = None,
    ) -> None:
        if tls not in _TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(_TLS_MODES)}, not {tls!r}")
        if pool_size < 1 or max_messages_per_connection < 1:
            raise ValueError("pool_size and max_messages_per_connection must be at least 1")
        if timeout <= 0 or idle_timeout <= 0:
            raise ValueError("timeout and idle_timeout must be positive")
        if password is not None and username is None:
            raise ValueError("a password needs a username")
        if tls == "none" and tls_context is not None:
            raise ValueError('tls_context is unused with tls="none"')
        # Checked as booleans: a setting read from the environment as "false" is truthy.
        switches: dict[str, object] = {"pipelining": pipelining, "chunking": chunking}
        for name, value in switches.items():
            if not isinstance(value, bool) and not (name == "chunking" and value is None):
                raise ValueError(f"{name} must be True or False, not {value!r}")
        if chunking and not pipelining:
            raise ValueError("chunking=True needs pipelining=True (BDAT goes in the group)")
        self.host = host
        self.port = port if port is not None else _DEFAULT_PORTS.get(tls, 25)
        if tls == "auto" and self.port == 465:
            tls = "implicit"
        self.tls: TLSMode = tls
        self._sender = parse_sender(sender)
        self._username = username
        self._password = password
        self._tls_context = tls_context
        self._timeout = timeout
        self._local_hostname = local_hostname
        self._logger = logger or logging.getLogger("apitask.mail.smtp")
        self._log_sends = log_sends
        self._pipelining = pipelining
        self._chunking = pipelining if chunking is None else chunking
        self.counters = SMTPCounters()
        self._pool = ConnectionPool(
            self._open,
            size=pool_size,
            idle_timeout=idle_timeout,
            max_messages=max_messages_per_connection,
            quit_timeout=timeout,
        )
        self._closing = False
        self._in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()

    @property
    def sender(self) -> str:
        """The envelope sender (``MAIL FROM``), domain in IDNA form."""
        return self._sender.address

    @property
    def connections_opened(self) -> int:
        """Connections opened so far (pool reuse shows as a small number)."""
        return self._pool.opened

    @property
    def idle_connections(self) -> int:
        """Connections open and waiting for the next send."""
        return self._pool.idle

    async def __aenter__(self) -> SMTPClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def send(self, message: Message) -> None:
        """Deliver ``message`` to the server, or raise.

        Raises:
            InvalidMessageError: the message cannot be written (no I/O done).
            TransientMailError: a 4xx reply, a drop or a timeout (``code`` kept).
            PermanentMailError: a 5xx reply, or the server lacks SMTPUTF8,
                STARTTLS or AUTH that this mail or client needs.
            MailError: the client is closed.
        """
        if self._closing:
            raise MailError("the SMTP client is closed")
        try:
            envelope = render(message, self._sender)
        except InvalidMessageError:
            self.counters.invalid += 1
            raise
        await self._counted(envelope, functools.partial(self._mail_one, envelope))
        if self._log_sends:
            # GoTrue's line names the recipient (mail_to); this one names the domain.
            self._logger.info("mail.send", extra=log_fields(message, mail_from=self.sender))

    async def send_raw(
        self, sender: str, recipients: Sequence[str], data: bytes
    ) -> dict[str, MailError]:
        """Deliver prepared message bytes to ``recipients``, in one mail transaction.

        For mail rendered elsewhere (Django's ``EmailMessage``, a stored
        MIME file): ``data`` goes out as it is (CRLF or LF line endings;
        dot-stuffing is done here), its headers are the caller's. ``sender``
        is the envelope sender (``MAIL FROM``, not this client's
        ``sender``); a display name in an address (``Name <addr>``) is
        dropped. Pooling, timeouts, the one retry after an early drop and the
        error classes are those of :meth:`send`.

        A recipient the server refuses while others are accepted does not
        fail the send (resending would repeat the mail to the others): its
        error is returned, by address, as smtplib and Django's SMTP backend do.

        Returns:
            The refused recipients (as given) and why; empty when every one was accepted.

        Raises:
            InvalidMessageError: no recipient, no bytes, or an address that
                cannot be written (no I/O done).
            TransientMailError: a 4xx reply, a drop or a timeout; or every
                recipient refused and at least one of them with a 4xx reply.
            PermanentMailError: a 5xx reply, every recipient refused for good,
                or the server lacks SMTPUTF8 that an address needs.
            MailError: the client is closed.
        """
        if self._closing:
            raise MailError("the SMTP client is closed")
        try:
            envelope = raw_envelope(sender, recipients, data)
        except InvalidMessageError:
            self.counters.invalid += 1
            raise
        refused = await self._counted(envelope, functools.partial(self._mail_many, envelope))
        return {recipients[i]: error for i, error in refused.items()}

    async def _counted(
        self,
        envelope: Envelope | RawEnvelope,
        mail: Callable[[Connection, list[str], Steps], Awaitable[T]],
    ) -> T:
        """:meth:`_transaction` in a pool slot, counted and timed, with aclose waiting for it."""
        started = time.perf_counter()
        self._in_flight += 1
        self._drained.clear()
        try:
            async with self._pool.slots:
                result = await self._transaction(envelope, mail)
        except TransientMailError:
            self.counters.transient += 1
            raise
        except PermanentMailError:
            self.counters.permanent += 1
            raise
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._drained.set()
        self.counters.sent += 1
        took = time.perf_counter() - started
        self.counters.send_seconds += took
        self.counters.send_latency.observe(took)
        return result

    async def aclose(self, timeout: float = 30.0) -> None:
        """Stop taking mail, let sends in progress finish, QUIT every connection.

        Sends still running after ``timeout`` seconds have their connections
        closed under them and fail with :class:`TransientMailError`.
        """
        self._closing = True
        self._pool.begin_close()
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            self._pool.abort()
            await self._drained.wait()
        await self._pool.wait_closed()

    async def _transaction(
        self,
        envelope: Envelope | RawEnvelope,
        mail: Callable[[Connection, list[str], Steps], Awaitable[T]],
    ) -> T:
        """One mail transaction, retried once on a fresh connection after an early drop.

        ``mail`` sends MAIL, RCPT and DATA on the connection, with the
        ``MAIL FROM`` options, and keeps ``steps`` up to date (the step and
        the recipient an error names). A :class:`MailError` it raises has
        already settled the connection.
        """
        retried = False
        while True:
            connection = await self._pool.checkout()
            smtp = connection.smtp
            if envelope.smtputf8 and not smtp.supports_extension("smtputf8"):
                self._pool.checkin(connection)
                # Which address needs it is not said: a recipient's address stays out
                # of the error's text (it is logged and stored).
                raise PermanentMailError(
                    f"an envelope address needs SMTPUTF8, which {self.host}:{self.port} "
                    "does not offer"
                )
            options = [f"SIZE={len(envelope.data)}"] if smtp.supports_extension("size") else []
            if envelope.smtputf8:
                options.append("SMTPUTF8")
            steps = Steps()
            try:
                result = await mail(connection, options, steps)
            except (aiosmtplib.SMTPException, OSError) as exc:
                await self._recover(connection, exc)
                step = steps.now
                if not retried and is_drop(exc) and steps.may_resend(exc) and not self._closing:
                    retried = True
                    self.counters.retries += 1
                    self._logger.info("SMTP connection dropped at %s; retrying once", step)
                    continue
                raise_mail_error(exc, step, steps.recipient)
            except MailError:
                raise
            except BaseException:
                self._pool.discard(connection)  # cancelled mid-transaction: state unknown
                raise
            connection.messages += 1
            self._pool.checkin(connection)
            return result

    async def _mail_one(
        self, envelope: Envelope, connection: Connection, options: list[str], steps: Steps
    ) -> None:
        """MAIL, RCPT, DATA (or BDAT) for one recipient, pipelined if the server offers it."""
        smtp = connection.smtp
        steps.recipient = envelope.recipient  # out of every reply, whatever the step
        if self._pipelining and smtp.supports_extension("pipelining"):
            send = send_pipelined
            if self._chunking and smtp.supports_extension("chunking"):
                send = send_chunked
            await send(smtp, envelope, options, timeout=self._timeout, steps=steps)
            return
        encoding = "utf-8" if envelope.smtputf8 else "ascii"
        await smtp.mail(envelope.sender, options=options, encoding=encoding)
        steps.now = "RCPT TO"
        await smtp.rcpt(envelope.recipient, encoding=encoding)
        steps.now = "DATA"
        await smtp.data(envelope.data)

    async def _mail_many(
        self, envelope: RawEnvelope, connection: Connection, options: list[str], steps: Steps
    ) -> dict[int, MailError]:
        """MAIL, a RCPT per recipient, DATA unless every recipient was refused.

        Returns the refused recipients' errors, by index.

        Raises:
            MailError: every recipient was refused (the connection is RSET and kept).
        """
        smtp = connection.smtp
        encoding = "utf-8" if envelope.smtputf8 else "ascii"
        refused: dict[int, MailError] = {}
        await smtp.mail(envelope.sender, options=options, encoding=encoding)
        steps.now = "RCPT TO"
        for index, recipient in enumerate(envelope.recipients):
            steps.recipient = recipient
            try:
                await smtp.rcpt(recipient, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                if is_drop(exc):
                    raise  # 421: the server is closing the connection
                refused[index] = mail_error(exc, steps.now, recipient)
                refusal = exc
        if len(refused) == len(envelope.recipients):
            await self._recover(connection, refusal)  # RSET: the connection is fine
            raise _all_refused(refused)
        steps.now, steps.recipient = "DATA", None
        await smtp.data(envelope.data)
        return refused

    async def _recover(self, connection: Connection, exc: BaseException) -> None:
        """After a refusal, RSET and keep the connection; after anything else, drop it."""
        if isinstance(exc, aiosmtplib.SMTPResponseException) and connection.smtp.is_connected:
            try:
                await connection.smtp.rset()
            except (aiosmtplib.SMTPException, OSError):
                self._pool.discard(connection)
            else:
                self._pool.checkin(connection)
            return
        self._pool.discard(connection)

    async def _open(self) -> aiosmtplib.SMTP:
        """A new connection, greeted, secured and authenticated as configured."""
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        context = self._tls_context
        if context is None and self.tls != "none":
            context = self._tls_context = await asyncio.to_thread(ssl.create_default_context)
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self._username,
            password=self._password,
            local_hostname=self._local_hostname,
            timeout=self._timeout,
            use_tls=self.tls == "implicit",
            start_tls={"auto": None, "starttls": True}.get(self.tls, False),
            tls_context=context,
        )
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:  # connect() greets only to STARTTLS or AUTH
                await smtp.ehlo()
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise_mail_error(exc, f"connecting to {self.host}:{self.port}")
        return smtp


def _all_refused(refused: dict[int, MailError]) -> MailError:
    """One error for a mail every recipient refused: transient if any refusal may pass."""
    errors = list(refused.values())
    first = next((e for e in errors if isinstance(e, TransientMailError)), errors[0])
    kind = TransientMailError if isinstance(first, TransientMailError) else PermanentMailError
    return kind(f"every recipient refused ({len(errors)}); first: {first}", code=first.code)

"""One mail transaction with ESMTP PIPELINING (RFC 2920): two round trips instead of four.

``MAIL FROM``, ``RCPT TO`` and ``DATA`` go out in one write; their three
replies are then read and checked in order; after a 354 the message and its
ending dot go out in a second write, and the last reply is read.

aiosmtplib cannot do this: its protocol delivers one reply per command it
sent, and a reply that arrives while the previous one has not yet been
picked up is dropped (``SMTPProtocol.data_received``), so replies sent
together can be lost. For the length of the transaction the connection's
transport is therefore handed to a :class:`_ReplyReader` of ours
(``transport.set_protocol``), which keeps every complete reply in order;
aiosmtplib's protocol gets the transport back afterwards, clean, for RSET,
the next transaction and QUIT. A loss of the connection in between is passed
on to aiosmtplib's protocol, so its ``SMTP`` object sees it as it would
have.

The replies fail as aiosmtplib's commands would have (the same exception
classes, raised for the first reply that failed, in command order), so the
client's classification and retry rules apply unchanged.

``_chunking`` uses the same reader and group check for one round trip with
BDAT when the server offers CHUNKING too.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from typing import TYPE_CHECKING, cast

import aiosmtplib

if TYPE_CHECKING:
    from collections.abc import Iterator

    from aiosmtplib.protocol import SMTPProtocol

    from ._mime import Envelope

__all__ = ["DATA_GROUP", "Steps", "check_group", "holding_replies", "send_pipelined"]

_MAX_LINE = 8192  # bytes, as aiosmtplib allows for one reply line
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


class Steps:
    """Which command's reply a transaction waits for, and for which recipient.

    An error names the step; the recipient's local part is kept out of its text.
    ``data_sent`` says the message's bytes are on the wire already (BDAT
    writes them with MAIL and RCPT).
    """

    __slots__ = ("data_sent", "now", "recipient")

    def __init__(self) -> None:
        self.now = "MAIL FROM"
        self.recipient: str | None = None
        self.data_sent = False

    def may_resend(self, exc: Exception) -> bool:
        """Whether the server surely did not take the message, ``exc`` having ended the send.

        Before the message's bytes go out it has nothing. Once they are out,
        only a refusal of MAIL or RCPT says so: a drop with no reply may
        come after the server queued the message, since a pipelining server
        may hold every reply of a group until the BDAT chunk is in.
        """
        if self.now in ("DATA", "BDAT"):
            return False
        return not self.data_sent or isinstance(exc, aiosmtplib.SMTPResponseException)


class _ReplyReader(asyncio.Protocol):
    """The transport's protocol while replies to a pipelined group come in."""

    def __init__(self, inner: SMTPProtocol, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop
        self._buffer = bytearray()
        self._lines: list[bytes] = []
        self.replies: deque[aiosmtplib.SMTPResponse] = deque()
        self.lost: BaseException | None = None
        """The connection is gone: raised once the replies that came before it are read."""
        self.broken: BaseException | None = None
        """A reply could not be read: raised at once, the order of replies is lost."""
        self._waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _MAX_LINE:  # the replies to a group are a few short lines
            del self._buffer[:]
            self.broken = aiosmtplib.SMTPResponseException(-1, "Response too long")
        while (end := self._buffer.find(b"\n")) != -1:
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            self._lines.append(line)
            if line[3:4] != b"-":  # the last line of a reply ("250 ..." not "250-...")
                self._reply()
        self._wake()

    def _reply(self) -> None:
        lines, self._lines = self._lines, []
        try:
            code = int(lines[-1][:3])
        except ValueError:
            self.broken = aiosmtplib.SMTPResponseException(-1, "Malformed SMTP response")
            return
        text = b"\n".join(line[4:].strip(b" \t\r\n") for line in lines)
        self.replies.append(aiosmtplib.SMTPResponse(code, text.decode("utf-8", "replace")))

    def _lose(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._lose(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(aiosmtplib.SMTPServerDisconnected("Connection lost"))
        self._wake()
        self._inner.connection_lost(exc)  # aiosmtplib's SMTP learns it is closed

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    async def next_reply(self, timeout: float) -> aiosmtplib.SMTPResponse:
        """The next reply in order; raise on a lost connection or after ``timeout`` seconds."""
        while self.broken is not None or not self.replies:
            if self.broken is not None:
                raise self.broken
            if self.lost is not None:
                raise self.lost
            self._waiter = self._loop.create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError:
                raise aiosmtplib.SMTPReadTimeoutError(
                    "Timed out waiting for server response"
                ) from None
            finally:
                self._waiter = None
        return self.replies.popleft()


async def send_pipelined(
    smtp: aiosmtplib.SMTP,
    envelope: Envelope,
    options: list[str],
    *,
    timeout: float,
    steps: Steps,
) -> None:
    """MAIL, RCPT and DATA in one write, every reply checked in order, then the message.

    ``smtp`` must be connected, greeted and have offered PIPELINING.

    Raises:
        aiosmtplib.SMTPException: as aiosmtplib's ``mail``/``rcpt``/``data``
            would (``steps.now`` names the command whose reply failed); a
            lost connection, a timeout or a 421 also close ``smtp``.
    """
    encoding = "utf-8" if envelope.smtputf8 else "ascii"
    head = " ".join([f"MAIL FROM:<{envelope.sender}>", *options])
    group = f"{head}\r\nRCPT TO:<{envelope.recipient}>\r\nDATA\r\n".encode(encoding)
    with holding_replies(smtp) as (transport, reader):
        transport.write(group)
        refused = await check_group(
            smtp, transport, reader, envelope, DATA_GROUP, timeout=timeout, steps=steps
        )
        if refused is not None:
            raise refused
        steps.now = "DATA"
        # The envelope's data ends with CRLF (render()): the dot is a line of its own.
        transport.write(_LEADING_DOT.sub(b"..", envelope.data) + b".\r\n")
        reply = await reader.next_reply(timeout)
        if reply.code != 250:
            raise _closing(smtp, aiosmtplib.SMTPDataError(reply.code, reply.message))


@contextlib.contextmanager
def holding_replies(smtp: aiosmtplib.SMTP) -> Iterator[tuple[asyncio.Transport, _ReplyReader]]:
    """Hand ``smtp``'s transport to a :class:`_ReplyReader` for one transaction.

    On the way out, a lost connection or a timeout closes ``smtp`` (the
    replies may be out of step), as does an unreadable reply; otherwise
    aiosmtplib's protocol gets the transport back.
    """
    protocol = smtp.protocol
    assert protocol is not None  # the pool hands out connected connections only
    # An asyncio.Transport in duck type only: uvloop's does not subclass it.
    transport = cast("asyncio.Transport", protocol.transport)
    reader = _ReplyReader(protocol, asyncio.get_running_loop())
    transport.set_protocol(reader)
    try:
        yield transport, reader
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        smtp.close()  # as aiosmtplib does: the replies may be out of step now
        raise
    except aiosmtplib.SMTPResponseException:
        if reader.broken is not None:
            smtp.close()  # an unreadable reply: never reuse the connection
        raise
    finally:
        if not transport.is_closing():
            transport.set_protocol(protocol)


async def check_group(
    smtp: aiosmtplib.SMTP,
    transport: asyncio.Transport,
    reader: _ReplyReader,
    envelope: Envelope,
    group: tuple[tuple[str, tuple[int, ...]], ...],
    *,
    timeout: float,
    steps: Steps,
) -> aiosmtplib.SMTPResponseException | None:
    """Read the replies to ``group`` (steps and their good codes); return the first refusal.

    Refusals are judged in command order.

    Every reply is read before judging, so the connection stays in step for
    the RSET that follows a refusal. A DATA accepted after a refusal (a
    server that took DATA with no recipient) gets an empty message's dot, and
    its reply is read too.
    """
    refused: aiosmtplib.SMTPResponseException | None = None
    for step, good in group:
        if refused is None:
            steps.now = step
        try:
            reply = await reader.next_reply(timeout)
            if refused is not None and step == "DATA" and reply.code == 354:  # taken all the same
                transport.write(b".\r\n")  # end the unwanted message, empty
                await reader.next_reply(timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            if refused is None:
                raise
            smtp.close()  # out of step: never reused
            return refused  # the refusal says more than the drop after it
        if refused is None and reply.code not in good:
            refused = _refusal(step, reply, envelope)
            if reply.code == 421:  # the server is closing: nothing more will come
                smtp.close()
                return refused
    return refused


DATA_GROUP = (("MAIL FROM", (250,)), ("RCPT TO", (250, 251)), ("DATA", (354,)))
"""The commands written together before the message, and the replies that accept them."""


def _refusal(
    step: str, reply: aiosmtplib.SMTPResponse, envelope: Envelope
) -> aiosmtplib.SMTPResponseException:
    """The exception aiosmtplib raises when ``step`` gets ``reply`` (BDAT's is DATA's)."""
    if step == "MAIL FROM":
        return aiosmtplib.SMTPSenderRefused(reply.code, reply.message, envelope.sender)
    if step == "RCPT TO":
        return aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, envelope.recipient)
    return aiosmtplib.SMTPDataError(reply.code, reply.message)


def _closing(
    smtp: aiosmtplib.SMTP, exc: aiosmtplib.SMTPResponseException
) -> aiosmtplib.SMTPResponseException:
    if exc.code == 421:  # as aiosmtplib does: a server that says it is closing is closed
        smtp.close()
    return exc

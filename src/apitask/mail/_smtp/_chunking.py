"""One mail transaction in one round trip: PIPELINING (RFC 2920) with CHUNKING (RFC 3030).

``MAIL FROM``, ``RCPT TO`` and ``BDAT <n> LAST`` followed by the ``n`` bytes
of the message go out in one write; the three replies are then read and
checked in order, the last of them being the message's fate. With DATA the
client must wait for the 354 before the message may follow (RFC 2920 ends a
group at DATA), which costs a second round trip; BDAT says how long the
message is, so nothing has to be waited for. The bytes go as they are: no
dot-stuffing and no ending dot, which only DATA needs.

A refusal anywhere keeps the connection in step: a server that offers
PIPELINING must accept and discard the BDAT chunks already in the pipeline
after a failure (RFC 3030, section 2), and the chunk's size tells it where
the chunk ends even when it refused the BDAT itself (after a refused MAIL or
RCPT, say); so after the three replies the next thing it reads is the RSET
that the client sends after a refusal, as without chunking. Postfix's
smtpd does so (tests/integration/mail/test_smtp_chunking.py).

The message's bytes are on the wire before any reply is read, so a drop with
no reply is not resent (see :meth:`Steps.may_resend`); a 4xx or 5xx reply
maps to the exceptions aiosmtplib would raise, a refused BDAT to
``SMTPDataError`` as a refused message after DATA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._pipeline import check_group, holding_replies

if TYPE_CHECKING:
    import aiosmtplib

    from ._mime import Envelope
    from ._pipeline import Steps

__all__ = ["BDAT_GROUP", "send_chunked"]

BDAT_GROUP = (("MAIL FROM", (250,)), ("RCPT TO", (250, 251)), ("BDAT", (250,)))
"""The commands of one chunked transaction, and the replies that accept them."""


async def send_chunked(
    smtp: aiosmtplib.SMTP,
    envelope: Envelope,
    options: list[str],
    *,
    timeout: float,
    steps: Steps,
) -> None:
    """MAIL, RCPT, ``BDAT <n> LAST`` and the message in one write; every reply checked.

    ``smtp`` must be connected, greeted and have offered PIPELINING and CHUNKING.

    Raises:
        aiosmtplib.SMTPException: as aiosmtplib's ``mail``/``rcpt``/``data``
            would (``steps.now`` names the command whose reply failed); a
            lost connection, a timeout or a 421 also close ``smtp``.
    """
    encoding = "utf-8" if envelope.smtputf8 else "ascii"
    head = " ".join([f"MAIL FROM:<{envelope.sender}>", *options])
    commands = (
        f"{head}\r\nRCPT TO:<{envelope.recipient}>\r\nBDAT {len(envelope.data)} LAST\r\n"
    ).encode(encoding)
    with holding_replies(smtp) as (transport, reader):
        # One write: the group and its chunk leave in as few segments as the size allows.
        transport.write(commands + envelope.data)
        steps.data_sent = True
        refused = await check_group(
            smtp, transport, reader, envelope, BDAT_GROUP, timeout=timeout, steps=steps
        )
        if refused is not None:
            raise refused

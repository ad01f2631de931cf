"""SMTPClient when the server refuses, drops or stalls: classified errors, safe retries."""

from __future__ import annotations

import asyncio
import email
from email.policy import default
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apitask.mail import InvalidMessageError, Message, PermanentMailError, TransientMailError

from .smtp_server import DROP, STALL, MailServer, client_for, message, start_server

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    StartServer = Callable[..., Awaitable[MailServer]]


async def test_a_drop_before_data_is_retried_once_on_a_fresh_connection(
    mail_server: StartServer,
) -> None:
    server = await mail_server()
    server.script("MAIL", DROP)
    async with client_for(server) as client:
        await client.send(message())
        assert (client.counters.sent, client.counters.retries) == (1, 1)
    assert (server.connections, len(server.messages)) == (2, 1)


@pytest.mark.parametrize("reply", [DROP, "421 4.4.2 closing, idle too long"])
async def test_a_drop_at_rcpt_is_retried_too(mail_server: StartServer, reply: str) -> None:
    server = await mail_server()
    server.script("RCPT", reply)
    async with client_for(server) as client:
        await client.send(message())
        assert client.counters.retries == 1
    assert len(server.messages) == 1


async def test_only_one_retry(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("MAIL", DROP, DROP)
    async with client_for(server) as client:
        with pytest.raises(TransientMailError, match="connection lost during MAIL FROM") as caught:
            await client.send(message())
        assert caught.value.code is None
        assert (client.counters.retries, client.counters.transient) == (1, 1)
    assert server.messages == []


async def test_no_retry_once_the_server_may_have_the_message(mail_server: StartServer) -> None:
    """A drop after the message was sent is ambiguous: never resend (no duplicate)."""
    server = await mail_server()
    server.script("DATA", DROP)
    async with client_for(server) as client:
        with pytest.raises(TransientMailError, match="during DATA"):
            await client.send(message())
        assert client.counters.retries == 0
    assert (server.connections, len(server.messages)) == (1, 1)


@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA"])
@pytest.mark.parametrize(
    ("reply", "error", "code"),
    [
        ("451 4.3.0 try again later", TransientMailError, 451),
        ("452 4.2.2 mailbox full", TransientMailError, 452),
        ("550 5.1.1 no such user", PermanentMailError, 550),
        ("554 5.7.1 rejected", PermanentMailError, 554),
    ],
)
async def test_replies_are_classified_and_keep_their_code(
    mail_server: StartServer,
    command: str,
    reply: str,
    error: type[Exception],
    code: int,
) -> None:
    server = await mail_server()
    server.script(command, reply)
    async with client_for(server) as client:
        with pytest.raises(error, match=reply.split(" ", 1)[1]) as caught:
            await client.send(message(1))
        assert caught.value.code == code  # type: ignore[attr-defined]
        # The refusal was reset (RSET); the connection is reused for the next mail.
        await client.send(message(2))
        assert client.connections_opened == 1
        assert client.counters.retries == 0
    assert "RSET" in server.handler.commands
    assert len(server.messages) == 1


async def test_a_failed_reset_discards_the_connection(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("MAIL", "550 5.7.1 no")
    server.script("RSET", "500 what")
    async with client_for(server) as client:
        with pytest.raises(PermanentMailError):
            await client.send(message(1))
        await client.send(message(2))
        assert client.connections_opened == 2


@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA"])
async def test_a_stalled_server_times_out_as_transient(
    mail_server: StartServer, command: str
) -> None:
    server = await mail_server()
    server.script(command, STALL)
    async with client_for(server, timeout=0.1) as client:
        with pytest.raises(TransientMailError, match="timed out"):
            await client.send(message())
        assert client.counters.retries == 0  # a timeout is not retried: latency stays bounded


async def test_a_server_that_never_greets_times_out() -> None:
    accepted = asyncio.Event()
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fake = MailServer("127.0.0.1", port, None)  # type: ignore[arg-type]
    try:
        async with client_for(fake, timeout=0.1) as client:
            with pytest.raises(TransientMailError, match="timed out during connecting"):
                await client.send(message())
        assert accepted.is_set()
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def test_connection_refused_is_transient() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    closed = MailServer("127.0.0.1", port, None)  # type: ignore[arg-type]
    async with client_for(closed) as client:
        with pytest.raises(TransientMailError, match="connecting to"):
            await client.send(message())


async def test_a_cancelled_send_discards_its_connection(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("DATA", STALL)
    async with client_for(server) as client:
        send = asyncio.create_task(client.send(message(1)))
        await server.wait_until(lambda: "DATA" in server.handler.commands)
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        await server.wait_until(lambda: server.open == 0)
        await client.send(message(2))
        assert client.connections_opened == 2


# ------------------------------------------------------------- header injection

_BREAKERS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))] + ["\u2028", "\u2029"]
hostile = st.one_of(
    st.text(max_size=30),
    st.tuples(st.text(max_size=10), st.sampled_from(_BREAKERS), st.text(max_size=10)).map("".join),
    st.sampled_from(
        [
            "x\r\nBcc: victim@evil.example",
            "x\nBcc: victim@evil.example",
            "x\rBcc: victim@evil.example",
            "x\u2028Bcc: victim@evil.example",
            "a@b.example>\r\nBcc: v@evil.example",
            "=?utf-8?q?x=0D=0ABcc:_v@evil.example?=",
            '"x\r\n" <a@b.example>',
        ]
    ),
)


async def _deliver(fields: dict[str, Any], sender_name: str) -> tuple[Message, bytes] | None:
    """Build, send and return what arrived; ``None`` when refused as invalid."""
    server = await start_server(enable_SMTPUTF8=True)
    try:
        try:
            mail = Message(**fields)
            client = client_for(server, sender=f"{sender_name} <no-reply@acme.example>")
        except InvalidMessageError:
            return None
        async with client:
            try:
                await client.send(mail)
            except InvalidMessageError:
                return None
        return mail, server.messages[0]
    finally:
        await server.close()


@pytest.mark.no_blockbuster  # each example runs its own event loop (asyncio.run)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(to=hostile, subject=hostile, header=hostile, value=hostile, who=hostile)
def test_no_field_can_add_a_header_line(
    to: str, subject: str, header: str, value: str, who: str
) -> None:
    fields = {
        "to": f"{to}@example.org" if "@" not in to else to,
        "subject": subject,
        "text": "body",
        "headers": {f"X-{header}": value},
    }
    result = asyncio.run(_deliver(fields, who))
    if result is None:
        return
    mail, data = result
    head = data.split(b"\r\n\r\n", 1)[0]
    # Every header line is either a known field or a folded continuation.
    names = [
        line.split(b":", 1)[0].decode() for line in head.split(b"\r\n") if line[:1] not in b" \t"
    ]
    assert names == [
        "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", f"X-{header}",
        "Content-Type", "Content-Transfer-Encoding",
    ]  # fmt: skip
    parsed = email.message_from_string(data.decode(), policy=default)
    assert len(parsed.keys()) == len(names)
    assert parsed["subject"] == subject
    assert parsed[f"X-{header}"] == value
    (recipient,) = parsed["to"].addresses
    assert recipient.username == mail.to.rpartition("@")[0]

"""SMTPClient.send_raw: prepared bytes to several recipients over the pooled connections."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from apitask.mail import (
    InvalidMessageError,
    MailError,
    PermanentMailError,
    TransientMailError,
)

from .smtp_server import DROP, STALL, MailServer, client_for, message, start_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    StartServer = Callable[..., Awaitable[MailServer]]


@pytest.fixture
async def mail_server() -> AsyncIterator[StartServer]:
    """Servers that answer each command (send_raw does not pipeline yet, so the
    package's server that holds MAIL and RCPT replies until DATA is left out)."""
    servers: list[MailServer] = []

    async def start(**options: Any) -> MailServer:
        servers.append(await start_server(**options))
        return servers[-1]

    yield start
    for server in servers:
        await server.close()


async def test_a_server_offering_pipelining_gets_one_command_at_a_time(
    mail_server: StartServer,
) -> None:
    server = await mail_server(pipelining="offer")
    async with client_for(server) as client:
        assert await client.send_raw("o@example.org", ["a@example.org"], DATA) == {}
    assert server.messages == [DATA]


DATA = b"From: a@example.org\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n\r\nline\r\n.dot\r\n"


async def test_one_transaction_for_every_recipient_and_the_bytes_unchanged(
    mail_server: StartServer,
) -> None:
    server = await mail_server()
    async with client_for(server) as client:
        refused = await client.send_raw(
            "Ops <ops@example.org>", ["Ann <ann@example.org>", "bob@example.net"], DATA
        )
        await client.send(message())  # the same pooled connection serves both kinds
        assert refused == {}
        assert (client.counters.sent, client.connections_opened) == (2, 1)
    envelope = server.handler.envelopes[0]
    assert (envelope.mail_from, envelope.rcpt_tos) == (
        "ops@example.org",
        ["ann@example.org", "bob@example.net"],
    )
    assert server.messages[0] == DATA
    assert any(option.startswith("SIZE=") for option in envelope.mail_options)


async def test_a_recipient_refused_among_accepted_ones_is_returned_not_raised(
    mail_server: StartServer,
) -> None:
    server = await mail_server()
    server.script("RCPT", "550 5.1.1 <gone@example.org>: no such user")
    async with client_for(server) as client:
        refused = await client.send_raw(
            "ops@example.org", ["Gone <gone@example.org>", "ann@example.org"], DATA
        )
    assert list(refused) == ["Gone <gone@example.org>"]  # keyed as the caller gave it
    error = refused["Gone <gone@example.org>"]
    assert isinstance(error, PermanentMailError)
    assert error.code == 550
    assert "gone@" not in str(error)  # addresses stay out of logged text
    assert server.handler.envelopes[0].rcpt_tos == ["ann@example.org"]


@pytest.mark.parametrize(
    ("replies", "kind", "code"),
    [
        (("550 no such user", "450 mailbox busy"), TransientMailError, 450),
        (("550 no such user", "551 not local"), PermanentMailError, 550),
    ],
)
async def test_every_recipient_refused_raises_and_keeps_the_connection(
    mail_server: StartServer, replies: tuple[str, str], kind: type[MailError], code: int
) -> None:
    server = await mail_server()
    server.script("RCPT", *replies)
    async with client_for(server) as client:
        with pytest.raises(kind, match=r"every recipient refused \(2\)") as caught:
            await client.send_raw("ops@example.org", ["a@example.org", "b@example.org"], DATA)
        assert caught.value.code == code
        assert "DATA" not in server.handler.commands
        assert server.handler.commands[-1] == "RSET"
        await client.send_raw("ops@example.org", ["c@example.org"], DATA)
        assert client.connections_opened == 1
        counted = client.counters.transient + client.counters.permanent
        assert (counted, client.counters.sent) == (1, 1)


@pytest.mark.parametrize("reply", [DROP, "421 4.4.2 closing"])
async def test_a_drop_at_rcpt_is_retried_once_on_a_fresh_connection(
    mail_server: StartServer, reply: str
) -> None:
    server = await mail_server()
    server.script("RCPT", "250 OK", reply)  # the second recipient's RCPT
    async with client_for(server) as client:
        recipients = ["a@example.org", "b@example.org"]
        assert await client.send_raw("o@example.org", recipients, DATA) == {}
        assert client.counters.retries == 1
    assert server.connections == 2
    assert server.handler.envelopes[-1].rcpt_tos == ["a@example.org", "b@example.org"]


async def test_a_drop_at_data_is_transient_and_never_resent(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("DATA", DROP)
    async with client_for(server) as client:
        with pytest.raises(TransientMailError, match="during DATA"):
            await client.send_raw("o@example.org", ["a@example.org"], DATA)
        assert (client.counters.retries, client.counters.transient) == (0, 1)
    assert server.handler.commands.count("DATA") == 1


async def test_a_refused_sender_is_permanent(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("MAIL", "553 sender not allowed")
    async with client_for(server) as client:
        with pytest.raises(PermanentMailError, match="MAIL FROM") as caught:
            await client.send_raw("o@example.org", ["a@example.org"], DATA)
    assert caught.value.code == 553


@pytest.mark.parametrize(
    ("sender", "recipients", "data", "match"),
    [
        ("o@example.org", "a@example.org", DATA, "not one string"),
        ("o@example.org", [], DATA, "at least one recipient"),
        ("o@example.org", ["a@example.org"], b"", "bytes are empty"),
        ("o@example.org", ["a@example.org\r\nRCPT TO:<x@evil.test>"], DATA, "recipient"),
        ("not an address", ["a@example.org"], DATA, "sender"),
    ],
)
async def test_an_envelope_that_cannot_be_written_fails_before_any_io(
    mail_server: StartServer, sender: str, recipients: list[str], data: bytes, match: str
) -> None:
    server = await mail_server()
    async with client_for(server) as client:
        with pytest.raises(InvalidMessageError, match=match):
            await client.send_raw(sender, recipients, data)
        assert client.counters.invalid == 1
    assert server.connections == 0


async def test_smtputf8_is_asked_for_and_required(mail_server: StartServer) -> None:
    plain, utf8 = await mail_server(), await mail_server(enable_SMTPUTF8=True)
    recipients = ["ann@example.org", "zoë@exämple.org"]
    async with client_for(plain) as client:
        with pytest.raises(PermanentMailError, match="needs SMTPUTF8"):
            await client.send_raw("o@example.org", recipients, DATA)
    async with client_for(utf8) as client:
        await client.send_raw("o@example.org", recipients, DATA)
    envelope = utf8.handler.envelopes[0]
    assert "SMTPUTF8" in envelope.mail_options
    assert envelope.rcpt_tos == ["ann@example.org", "zoë@xn--exmple-cua.org"]


async def test_a_cancelled_send_discards_its_connection(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("DATA", STALL)
    async with client_for(server) as client:
        send = asyncio.create_task(client.send_raw("o@example.org", ["a@example.org"], DATA))
        await server.wait_until(lambda: "DATA" in server.handler.commands)
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        await server.wait_until(lambda: server.open == 0)


async def test_a_closed_client_refuses(mail_server: StartServer) -> None:
    server = await mail_server()
    client = client_for(server)
    await client.aclose()
    with pytest.raises(MailError, match="closed"):
        await client.send_raw("o@example.org", ["a@example.org"], DATA)

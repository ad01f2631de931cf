"""CHUNKING (RFC 3030) with PIPELINING: MAIL, RCPT, BDAT and the message in one write.

Against three real servers: the in-process server of chunking_server.py,
which can fail each step; Postfix's own smtpd (a private instance, see
postfix_server.py), which offers CHUNKING (smtp-sink does not); and
aiosmtpd, which offers neither, for the fallback.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

import pytest

from apitask.mail import Message, PermanentMailError, SMTPClient, TransientMailError
from apitask.mail._smtp._mime import parse_sender, render

from . import postfix_server
from .chunking_server import DROP, DROP_MID_CHUNK, STALL, ChunkingServer, start_chunking_server
from .smtp_server import SENDER, client_for, message, start_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from .postfix_server import Postfix


FIRST, SECOND = message(1), message(2)
"""Kept: each ``message()`` call has its own Message-ID."""


def wire(msg: Message) -> bytes:
    """The bytes the client sends for ``msg`` (before any dot-stuffing)."""
    return render(msg, parse_sender(SENDER)).data


def client_at(port: int, **options: Any) -> SMTPClient:
    """A plain-text client for 127.0.0.1:``port``, 2 s per step; ``options`` win."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": SENDER,
        "tls": "none",
        "local_hostname": "client.test",
        "timeout": 2.0,
    }
    return SMTPClient(**(settings | options))


@pytest.fixture
async def chunking_server() -> AsyncIterator[Callable[..., Awaitable[ChunkingServer]]]:
    servers: list[ChunkingServer] = []

    async def start(**options: Any) -> ChunkingServer:
        servers.append(await start_chunking_server(**options))
        return servers[-1]

    yield start
    for server in servers:
        await server.close()


# ------------------------------------------------------------ the BDAT path


async def test_mail_rcpt_bdat_and_the_message_go_in_one_write(
    chunking_server: Callable[..., Awaitable[ChunkingServer]],
) -> None:
    """Fails on a client that sends DATA, or waits for a reply before BDAT (the
    server holds MAIL's and RCPT's replies until it has answered BDAT)."""
    server = await chunking_server()
    messages = [message(n) for n in range(3)]
    async with client_at(server.port) as client:
        for msg in messages:
            await client.send(msg)
        assert client.connections_opened == 1
    assert server.commands == ["EHLO", *["MAIL", "RCPT", "BDAT"] * 3, "QUIT"]
    # The bytes as they are: no dot-stuffing, no ending dot.
    assert server.chunks == [wire(msg) for msg in messages]
    assert all(b"\r\n.leading dot\r\n" in chunk for chunk in server.chunks)


async def test_chunking_false_sends_data_with_dot_stuffing(
    chunking_server: Callable[..., Awaitable[ChunkingServer]],
) -> None:
    server = await chunking_server()
    async with client_at(server.port, chunking=False) as client:
        await client.send(FIRST)
    assert server.commands == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert b"\r\n..leading dot\r\n" in server.data[0]  # stuffed on the wire
    assert server.messages == [wire(FIRST)]


async def test_without_chunking_offered_the_client_sends_data(
    chunking_server: Callable[..., Awaitable[ChunkingServer]],
) -> None:
    server = await chunking_server(chunking=False)
    async with client_at(server.port) as client:
        await client.send(FIRST)
    assert "BDAT" not in server.commands
    assert server.messages == [wire(FIRST)]


async def test_pipelining_false_sends_neither_bdat_nor_a_group(
    chunking_server: Callable[..., Awaitable[ChunkingServer]],
) -> None:
    server = await chunking_server(hold=False)
    async with client_at(server.port, pipelining=False) as client:
        await client.send(FIRST)
    assert server.commands == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"pipelining": False, "chunking": True}, "chunking=True needs pipelining=True"),
        ({"chunking": "false"}, "chunking must be True or False"),
        ({"pipelining": "false"}, "pipelining must be True or False"),
    ],
)
def test_contradicting_or_non_boolean_switches_are_refused(
    settings: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        SMTPClient(host="127.0.0.1", sender=SENDER, **settings)


@pytest.mark.parametrize(
    ("verb", "reply", "error", "step"),
    [
        ("MAIL", "451 4.3.0 busy", TransientMailError, "MAIL FROM"),
        ("MAIL", "553 5.7.1 sender refused", PermanentMailError, "MAIL FROM"),
        ("RCPT", "450 4.2.1 <user1@example.org> try later", TransientMailError, "RCPT TO"),
        ("RCPT", "550 5.1.1 <user1@example.org> no such user", PermanentMailError, "RCPT TO"),
        ("BDAT", "452 4.3.1 insufficient storage", TransientMailError, "BDAT"),
        ("BDAT", "554 5.6.0 content refused", PermanentMailError, "BDAT"),
    ],
)
async def test_a_refusal_keeps_its_class_and_the_connection_stays_in_step(
    chunking_server: Callable[..., Awaitable[ChunkingServer]],
    verb: str,
    reply: str,
    error: type[Exception],
    step: str,
) -> None:
    server = await chunking_server()
    server.script(verb, reply)
    async with client_at(server.port) as client:
        with pytest.raises(error, match=f"refused {step}: {reply[:3]}") as caught:
            await client.send(FIRST)
        assert caught.value.code == int(reply[:3])  # type: ignore[attr-defined]
        assert "user1" not in str(caught.value)  # the local part stays out of the error
        await client.send(SECOND)  # the next mail gets its own replies
        assert (client.connections_opened, client.counters.retries) == (1, 0)
    # The refused chunk was read all the same; RSET came after the three replies.
    assert server.commands == [
        "EHLO",
        "MAIL",
        "RCPT",
        "BDAT",
        "RSET",
        "MAIL",
        "RCPT",
        "BDAT",
        "QUIT",
    ]
    assert server.messages == [wire(SECOND)]


async def test_a_421_to_mail_is_retried_once_on_a_fresh_connection(
    chunking_server: Callable[..., Awaitable[ChunkingServer]],
) -> None:
    """The server said it closes before it took anything: resending is safe."""
    server = await chunking_server()
    server.script("MAIL", "421 4.3.2 shutting down")
    async with client_at(server.port) as client:
        await client.send(FIRST)
        assert (client.counters.retries, client.connections_opened) == (1, 2)
    assert server.messages == [wire(FIRST)]


@pytest.mark.parametrize(("verb", "action"), [("MAIL", DROP), ("BDAT", DROP_MID_CHUNK)])
async def test_a_drop_after_the_chunk_went_out_is_not_resent(
    chunking_server: Callable[..., Awaitable[ChunkingServer]], verb: str, action: str
) -> None:
    """Without a reply the client cannot know the server did not queue the mail."""
    server = await chunking_server()
    server.script(verb, action)
    async with client_at(server.port) as client:
        with pytest.raises(TransientMailError, match="connection lost") as caught:
            await client.send(FIRST)
        assert caught.value.code is None
        assert client.counters.retries == 0
        await client.send(SECOND)  # on a fresh connection
        assert client.connections_opened == 2
    assert server.messages == [wire(SECOND)]


async def test_a_421_to_bdat_is_not_resent(
    chunking_server: Callable[..., Awaitable[ChunkingServer]],
) -> None:
    server = await chunking_server()
    server.script("BDAT", "421 4.3.2 shutting down")
    async with client_at(server.port) as client:
        with pytest.raises(TransientMailError, match="refused BDAT: 421"):
            await client.send(FIRST)
        assert client.counters.retries == 0
        await client.send(SECOND)
        assert client.connections_opened == 2


async def test_a_stalled_reply_times_out_and_is_not_resent(
    chunking_server: Callable[..., Awaitable[ChunkingServer]],
) -> None:
    server = await chunking_server()  # holds MAIL's reply: nothing comes
    server.script("BDAT", STALL)
    async with client_at(server.port, timeout=0.3) as client:
        with pytest.raises(TransientMailError, match="timed out during MAIL FROM"):
            await client.send(FIRST)
        assert client.counters.retries == 0
        await client.send(SECOND)
        assert client.connections_opened == 2


async def test_an_address_that_needs_smtputf8_goes_in_utf8(
    chunking_server: Callable[..., Awaitable[ChunkingServer]],
) -> None:
    server = await chunking_server()
    msg = message(1, to="josé@example.org")
    async with client_at(server.port) as client:
        await client.send(msg)
    assert server.commands == ["EHLO", "MAIL", "RCPT", "BDAT", "QUIT"]
    assert server.messages == [wire(msg)]


# ------------------------------------------------------------ the fallback on aiosmtpd


async def test_aiosmtpd_without_chunking_gets_the_message_byte_for_byte() -> None:
    server = await start_server(pipelining="require")
    try:
        async with client_for(server, timeout=2.0) as client:
            await client.send(FIRST)
        assert "BDAT" not in server.handler.commands
        assert server.messages == [wire(FIRST)]
    finally:
        await server.close()


# ------------------------------------------------------------ Postfix's smtpd

# CI (.ci/run) sets APITASK_REQUIRE_POSTFIX=1: there these tests fail instead of skipping.
needs_postfix = pytest.mark.skipif(
    postfix_server.missing() is not None and os.environ.get("APITASK_REQUIRE_POSTFIX") != "1",
    reason=postfix_server.missing() or "",
)


@pytest.fixture(scope="module")
def postfix() -> Iterator[Postfix]:
    instance = postfix_server.start()
    yield instance
    instance.stop()


async def held(postfix: Postfix, msg: Message) -> bytes:
    """The held copy of ``msg`` as it was sent (CRLF), without Postfix's Received header."""
    subject = f"Subject: {msg.subject}\n".encode()
    (copy,) = [text for text in await asyncio.to_thread(postfix.held) if subject in text]
    received, _, rest = copy.partition(b"\n\t")  # Received: ... folded over three lines
    assert received.startswith(b"Received: from client.test")
    rest = rest.split(b"\n", 2)[2]
    return rest.replace(b"\n", b"\r\n")


@needs_postfix
@pytest.mark.parametrize("chunking", [True, False], ids=["chunking", "no-chunking"])
async def test_postfix_takes_the_mail_intact(postfix: Postfix, chunking: bool) -> None:
    """With CHUNKING offered the client sends BDAT; on the port that hides it, DATA."""
    port = postfix.port if chunking else postfix.port_no_chunking
    big = "line of a large message, long enough to span many TCP segments\n" * 2000
    messages = [
        message(n, to="hold@example.org", subject=f"intact {chunking} {n}") for n in range(2)
    ]
    messages.append(message(9, to="hold@example.org", subject=f"big {chunking}", text=big))
    async with client_at(port, timeout=10.0) as client:
        for msg in messages:
            await client.send(msg)
        assert client.connections_opened == 1
    for msg in messages:
        assert await held(postfix, msg) == wire(msg)


@needs_postfix
@pytest.mark.parametrize(
    ("fields", "error", "code", "step"),
    [
        ({"to": "unknown@example.org"}, PermanentMailError, 550, "RCPT TO"),
        ({"to": "later@example.org"}, TransientMailError, 450, "RCPT TO"),
        ({"subject": "reject me"}, PermanentMailError, 550, "BDAT"),
        ({"text": "x" * postfix_server.SIZE_LIMIT}, PermanentMailError, 552, "MAIL FROM"),
    ],
)
async def test_postfix_refusals_keep_their_class_and_the_connection_its_step(
    postfix: Postfix, fields: dict[str, str], error: type[Exception], code: int, step: str
) -> None:
    async with client_at(postfix.port, timeout=10.0) as client:
        for _ in range(2):
            with pytest.raises(error, match=f"refused {step}: {code}") as caught:
                await client.send(message(1, **fields))
            assert caught.value.code == code  # type: ignore[attr-defined]
            assert "unknown" not in str(caught.value)  # the local part stays out
        await client.send(message(2))
        assert (client.connections_opened, client.counters.sent) == (1, 1)

"""ESMTP PIPELINING (RFC 2920): one write for MAIL, RCPT and DATA, every reply still checked.

The failure and retry tests of the other modules run against a server that
requires pipelining too (conftest's ``mail_server``); these cover what only
a pipelined transaction has: replies that come together or in odd shapes,
the switch that turns it off, and Postfix's smtp-sink as a second server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
from typing import TYPE_CHECKING, Any

import aiosmtplib
import pytest

from apitask.mail import Message, PermanentMailError, SMTPClient, TransientMailError
from apitask.mail._smtp._pipeline import _ReplyReader

from .smtp_server import DROP, MailServer, client_for, message, start_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    StartServer = Callable[..., Awaitable[MailServer]]
    SinkClient = Callable[..., Awaitable[SMTPClient]]


async def test_a_server_that_answers_only_whole_groups_gets_every_mail() -> None:
    """Fails on a client that waits for each reply: the server holds MAIL's until DATA."""
    server = await start_server(pipelining="require")
    try:
        async with client_for(server, timeout=2.0) as client:
            for n in range(3):
                await client.send(message(n))
        assert server.connections == 1
        assert [e.rcpt_tos for e in server.handler.envelopes] == [
            [f"user{n}@example.org"] for n in range(3)
        ]
        # Dot-stuffing undone by the server: the line that starts with a dot arrived whole.
        assert all(b"\r\n.leading dot\r\n" in m for m in server.messages)
    finally:
        await server.close()


async def test_pipelining_false_waits_for_each_reply() -> None:
    server = await start_server(pipelining="require")
    try:
        async with client_for(server, timeout=0.5, pipelining=False) as client:
            with pytest.raises(TransientMailError, match="timed out during MAIL FROM"):
                await client.send(message())
        assert server.messages == []
    finally:
        await server.close()


async def test_a_reply_of_several_lines_is_one_reply(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("DATA", "250-queued\r\n250 as 1234")
    async with client_for(server) as client:
        await client.send(message(1))
        await client.send(message(2))  # in step: its replies are its own
        assert (client.counters.sent, client.connections_opened) == (2, 1)
    assert len(server.messages) == 1  # (the scripted reply stood in for the first's)


@pytest.mark.parametrize(
    ("reply", "match"),
    [("xyz what", "Malformed SMTP response"), ("250 " + "x" * 10_000, "too long")],
)
async def test_an_unreadable_reply_is_permanent_and_the_connection_is_dropped(
    mail_server: StartServer, reply: str, match: str
) -> None:
    server = await mail_server()
    server.script("MAIL", reply)
    async with client_for(server) as client:
        with pytest.raises(PermanentMailError, match=match):
            await client.send(message(1))
        await client.send(message(2))
        assert client.connections_opened == 2
    assert len(server.messages) == 1


async def test_a_refused_data_command_is_classified_and_reset(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("DATA command", "451 4.3.0 try again")
    async with client_for(server) as client:
        with pytest.raises(TransientMailError, match="refused DATA: 451") as caught:
            await client.send(message(1))
        assert caught.value.code == 451
        await client.send(message(2))
        assert client.connections_opened == 1
    assert len(server.messages) == 1


async def test_a_data_taken_after_a_refused_recipient_is_ended_empty() -> None:
    server = await start_server(pipelining="careless")
    server.script("RCPT", "550 5.1.1 no such user")
    try:
        async with client_for(server, timeout=2.0) as client:
            with pytest.raises(PermanentMailError, match="refused RCPT TO: 550"):
                await client.send(message(1))
            await client.send(message(2))  # in step after the empty message and RSET
            assert client.connections_opened == 1
        first, second = server.messages
        assert first == b""  # what the server got instead of message 1
        assert b"Hello 2" in second
    finally:
        await server.close()


async def test_a_drop_after_a_refusal_reports_the_refusal() -> None:
    """Not a retried drop: the 5xx came first and is the answer."""
    server = await start_server(pipelining="careless")
    server.script("RCPT", "550 5.1.1 no such user")
    server.script("DATA", DROP)
    try:
        async with client_for(server, timeout=2.0) as client:
            with pytest.raises(PermanentMailError, match="refused RCPT TO: 550"):
                await client.send(message(1))
            assert client.counters.retries == 0
            await client.send(message(2))
            assert client.connections_opened == 2
    finally:
        await server.close()


async def test_flow_control_reaches_aiosmtplibs_protocol() -> None:
    """While the reader holds the transport, pause/resume still reach aiosmtplib's protocol."""
    protocol = aiosmtplib.protocol.SMTPProtocol(loop=asyncio.get_running_loop())
    reader = _ReplyReader(protocol, asyncio.get_running_loop())
    reader.pause_writing()
    assert protocol._paused
    reader.resume_writing()
    assert not protocol._paused


# ------------------------------------------------------------------ smtp-sink

SMTP_SINK = shutil.which("smtp-sink", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
# CI (.ci/run) installs it and sets APITASK_REQUIRE_SMTP_SINK=1: there a missing
# smtp-sink fails these tests instead of skipping them.
needs_sink = pytest.mark.skipif(
    SMTP_SINK is None and os.environ.get("APITASK_REQUIRE_SMTP_SINK") != "1",
    reason="Postfix's smtp-sink is missing: run scripts/install-smtp-sink",
)


@pytest.fixture
async def sink_client() -> AsyncIterator[Callable[..., Awaitable[SMTPClient]]]:
    """Start smtp-sink with the given options on a free port; return a client for it."""
    started: list[asyncio.subprocess.Process] = []
    clients: list[SMTPClient] = []

    async def make(*options: str, **settings: Any) -> SMTPClient:
        assert SMTP_SINK is not None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        process = await asyncio.create_subprocess_exec(
            SMTP_SINK,
            *user,
            *options,
            f"127.0.0.1:{port}",
            "64",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        started.append(process)
        async with asyncio.timeout(10):
            while True:  # readiness: until it accepts connections
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.02)
                    continue
                writer.close()
                break
        server = MailServer("127.0.0.1", port, handler=None)  # type: ignore[arg-type]
        clients.append(client_for(server, timeout=5.0, **settings))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()
    for process in started:
        process.send_signal(signal.SIGTERM)
        await process.wait()


@needs_sink
async def test_smtp_sink_takes_pipelined_mail_on_one_connection(
    sink_client: SinkClient,
) -> None:
    client = await sink_client()
    for n in range(20):
        await client.send(message(n))
    assert client.counters.sent == 20
    assert client.connections_opened == 1


# smtp-sink stops offering PIPELINING when told to refuse or drop (its EHLO
# reply leaves it out), so these run one command at a time: they pin the
# classification and retry rules against it, which pipelining leaves alone.
@needs_sink
@pytest.mark.parametrize(
    ("options", "error", "code", "step"),
    [
        (("-f", "mail"), PermanentMailError, 500, "MAIL FROM"),
        (("-r", "rcpt"), TransientMailError, 450, "RCPT TO"),  # then DATA: 354, ended empty
        (("-f", "data"), PermanentMailError, 500, "DATA"),
        (("-r", "."), TransientMailError, 450, "DATA"),
    ],
)
async def test_smtp_sink_refusals_keep_their_class_and_step(
    sink_client: SinkClient,
    options: tuple[str, ...],
    error: type[Exception],
    code: int,
    step: str,
) -> None:
    client = await sink_client(*options)
    for _ in range(2):  # the connection stays in step: the second mail gets its own reply
        with pytest.raises(error, match=f"refused {step}") as caught:
            await client.send(message())
        assert caught.value.code == code  # type: ignore[attr-defined]
    assert client.connections_opened == 1


@needs_sink
@pytest.mark.parametrize(
    ("options", "match", "retries"),
    [
        # 421 then a hang-up at MAIL: a drop before DATA, retried once, then given up.
        (("-Q", "mail"), "refused MAIL FROM: 421", 1),
        # 421 at the end of the data: never resent.
        (("-Q", "."), "refused DATA: 421", 0),
    ],
)
async def test_smtp_sink_drops_follow_the_retry_rules(
    sink_client: SinkClient, options: tuple[str, ...], match: str, retries: int
) -> None:
    client = await sink_client(*options)
    with pytest.raises(Exception, match=match):
        await client.send(message())
    assert client.counters.retries == retries


@needs_sink
async def test_smtp_sink_without_pipelining_gets_one_command_at_a_time(
    sink_client: SinkClient,
) -> None:
    client = await sink_client("-p")  # -p: smtp-sink does not offer PIPELINING
    await client.send(Message(to="user@example.org", subject="s", text="t"))
    assert client.counters.sent == 1


def test_pipelining_on_uvloop() -> None:
    """uvloop's transports are asyncio transports in duck type only (not subclasses)."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        server = await start_server(pipelining="require")
        try:
            async with client_for(server, timeout=2.0) as client:
                for n in range(3):
                    await client.send(message(n))
            assert (server.connections, len(server.messages)) == (1, 3)
        finally:
            await server.close()

    uvloop.run(main())

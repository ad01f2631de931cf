"""SMTPClient against a real (aiosmtpd) server: delivery, pooling, TLS, AUTH, closing."""

from __future__ import annotations

import asyncio
import email
import logging
import ssl
from email.policy import default
from typing import TYPE_CHECKING, Any

import pytest

from apitask.mail import (
    InvalidMessageError,
    MailError,
    PermanentMailError,
    SMTPClient,
    TransientMailError,
)
from apitask.mail._smtp._mime import parse_sender, render

from .smtp_server import (
    PASSWORD,
    SENDER,
    STALL,
    USERNAME,
    MailServer,
    authenticate,
    client_for,
    message,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    StartServer = Callable[..., Awaitable[MailServer]]


async def test_a_send_delivers_exactly_the_rendered_bytes(mail_server: StartServer) -> None:
    server = await mail_server()
    mail = message(headers={"X-Kind": "recovery"})
    async with client_for(server) as client:
        await client.send(mail)
        assert client.counters.sent == 1
        assert client.counters.send_seconds > 0
        latency = client.counters.send_latency
        assert latency.count == 1
        assert latency.sum == client.counters.send_seconds
    (envelope,) = server.handler.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == ("no-reply@acme.example", [mail.to])
    # What arrived is what was built, dot-stuffing and all undone by the server.
    assert server.messages == [render(mail, parse_sender(SENDER)).data]
    parsed = email.message_from_bytes(server.messages[0], policy=default)
    assert parsed["x-kind"] == "recovery"
    assert server.handler.tls == [False]
    await server.wait_until(lambda: server.open == 0)  # aclose said QUIT


async def test_connections_are_reused(mail_server: StartServer) -> None:
    server = await mail_server(data_size_limit=None)  # no SIZE extension, for a change
    async with client_for(server, pool_size=4) as client:
        for n in range(10):
            await client.send(message(n))
        assert client.connections_opened == 1
        assert client.idle_connections == 1
    assert server.connections == 1
    assert len(server.messages) == 10


async def test_pool_size_bounds_connections_and_concurrent_sends(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("DATA", STALL, STALL, STALL)  # the first three DATA replies wait
    async with client_for(server, pool_size=3) as client:
        sends = [asyncio.create_task(client.send(message(n))) for n in range(7)]
        await server.wait_until(lambda: server.handler.commands.count("DATA") == 3)
        # Three sends hold the three connections; the other four wait for one.
        assert (server.connections, server.open) == (3, 3)
        assert not any(send.done() for send in sends)
        server.handler.release.set()
        await asyncio.gather(*sends)
        assert client.connections_opened == 3
    assert server.connections == 3
    assert len(server.messages) == 7


async def test_idle_connections_are_closed_after_idle_timeout(mail_server: StartServer) -> None:
    server = await mail_server()
    async with client_for(server, idle_timeout=0.05) as client:
        await client.send(message(1))
        await server.wait_until(lambda: server.open == 0)
        assert server.handler.commands[-1] == "QUIT"
        assert client.idle_connections == 0
        await client.send(message(2))
        assert client.connections_opened == 2


async def test_a_connection_carries_at_most_max_messages(mail_server: StartServer) -> None:
    server = await mail_server()
    async with client_for(server, max_messages_per_connection=2) as client:
        for n in range(5):
            await client.send(message(n))
    assert server.connections == 3
    assert server.handler.commands.count("QUIT") == 3


async def client_sees_close(client: SMTPClient) -> None:
    """Let the loop run until the client's idle connection has read the server's close.

    Not a sleep that orders events: it yields only until the EOF the server
    already sent (see ``server.open == 0``) has been processed client-side.
    """
    async with asyncio.timeout(5):
        while any(c.smtp.is_connected for c in client._pool._idle):  # noqa: ASYNC110 (aiosmtplib offers no event for it)
            await asyncio.sleep(0)


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    mail_server: StartServer,
) -> None:
    server = await mail_server()
    async with client_for(server) as client:
        await client.send(message(1))
        server.drop_all()
        await server.wait_until(lambda: server.open == 0)
        await client_sees_close(client)
        await client.send(message(2))
        assert client.connections_opened == 2
        assert client.counters.retries == 0  # seen at checkout: no failed round trip
    assert len(server.messages) == 2


async def test_aclose_with_connections_the_server_already_closed(
    mail_server: StartServer,
) -> None:
    server = await mail_server()
    client = client_for(server)
    await client.send(message(1))
    server.drop_all()
    await server.wait_until(lambda: server.open == 0)
    await client_sees_close(client)
    await client.aclose()
    assert "QUIT" not in server.handler.commands


async def test_starttls_required(
    mail_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = await mail_server(tls_context=server_tls, require_starttls=True)
    async with client_for(server, tls="starttls", tls_context=client_tls) as client:
        await client.send(message())
    assert server.handler.tls == [True]


async def test_auto_uses_starttls_when_offered_and_plain_text_when_not(
    mail_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    offering = await mail_server(tls_context=server_tls)
    plain = await mail_server()
    for server in (offering, plain):
        async with client_for(server, tls="auto", tls_context=client_tls) as client:
            await client.send(message())
    assert (offering.handler.tls, plain.handler.tls) == ([True], [False])


async def test_starttls_required_but_not_offered_is_permanent(mail_server: StartServer) -> None:
    server = await mail_server()
    async with client_for(server, tls="starttls") as client:
        with pytest.raises(PermanentMailError, match="STARTTLS"):
            await client.send(message())
        assert client.counters.permanent == 1


async def test_implicit_tls(
    mail_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = await mail_server(ssl=server_tls)
    async with client_for(server, tls="implicit", tls_context=client_tls) as client:
        await client.send(message())
    assert server.handler.tls == [True]


async def test_an_untrusted_certificate_is_permanent(
    mail_server: StartServer, server_tls: ssl.SSLContext
) -> None:
    """With no tls_context the system CAs are used, and they do not know the test CA."""
    server = await mail_server(ssl=server_tls)
    async with client_for(server, tls="implicit") as client:
        with pytest.raises(PermanentMailError, match="TLS failed"):
            await client.send(message())


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_success(
    mail_server: StartServer,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    mechanism: str,
) -> None:
    excluded = {"PLAIN", "LOGIN"} - {mechanism}
    server = await mail_server(
        tls_context=server_tls,
        authenticator=authenticate,
        auth_required=True,
        auth_exclude_mechanism=excluded,
    )
    async with client_for(
        server, tls="starttls", tls_context=client_tls, username=USERNAME, password=PASSWORD
    ) as client:
        await client.send(message())
    assert len(server.messages) == 1


async def test_auth_failure_is_permanent_with_its_code(
    mail_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = await mail_server(tls_context=server_tls, authenticator=authenticate)
    async with client_for(
        server, tls="starttls", tls_context=client_tls, username=USERNAME, password="wrong"
    ) as client:
        with pytest.raises(PermanentMailError) as caught:
            await client.send(message())
    assert caught.value.code == 535
    assert server.messages == []


async def test_auth_not_offered_is_permanent(mail_server: StartServer) -> None:
    server = await mail_server()
    async with client_for(server, username=USERNAME, password=PASSWORD) as client:
        with pytest.raises(PermanentMailError, match=r"AUTH|authentication"):
            await client.send(message())


async def test_smtputf8_used_when_offered(mail_server: StartServer) -> None:
    server = await mail_server(enable_SMTPUTF8=True)
    async with client_for(server, sender="Zoë <zoë@acme.example>") as client:
        await client.send(message(to="jürgen@bücher.example"))
    (envelope,) = server.handler.envelopes
    assert "SMTPUTF8" in envelope.mail_options
    assert (envelope.mail_from, envelope.rcpt_tos) == (
        "zoë@acme.example",
        ["jürgen@xn--bcher-kva.example"],
    )
    parsed = email.message_from_string(server.messages[0].decode(), policy=default)
    assert parsed["from"].addresses[0].display_name == "Zoë"


async def test_smtputf8_needed_but_not_offered_is_a_clear_permanent_error(
    mail_server: StartServer,
) -> None:
    server = await mail_server()
    async with client_for(server) as client:
        with pytest.raises(PermanentMailError, match="needs SMTPUTF8"):
            await client.send(message(to="jürgen@example.org"))
        await client.send(message(to="juergen@bücher.example"))  # IDNA domains need nothing
        assert client.connections_opened == 1  # the refusal left the connection usable
    assert server.handler.envelopes[0].rcpt_tos == ["juergen@xn--bcher-kva.example"]


async def test_aclose_waits_for_sends_in_progress(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("DATA", STALL)
    client = client_for(server)
    send = asyncio.create_task(client.send(message()))
    await server.wait_until(lambda: "DATA" in server.handler.commands)
    closing = asyncio.create_task(client.aclose())
    await server.wait_until(lambda: len(server.messages) == 1)
    assert not closing.done()
    server.handler.release.set()
    await asyncio.gather(send, closing)
    await server.wait_until(lambda: server.open == 0)
    with pytest.raises(MailError, match="closed"):
        await client.send(message())


async def test_aclose_bound_fails_the_sends_still_running(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("MAIL", STALL)
    client = client_for(server, pool_size=1)
    first = asyncio.create_task(client.send(message(1)))
    second = asyncio.create_task(client.send(message(2)))  # waits for the one connection
    await server.wait_until(lambda: "MAIL" in server.handler.commands)
    await client.aclose(timeout=0.05)
    for send in (first, second):
        with pytest.raises(TransientMailError):
            await send
    assert client.counters.transient == 2
    assert server.messages == []


async def test_quit_refused_or_stalled_still_closes(mail_server: StartServer) -> None:
    server = await mail_server()
    server.script("QUIT", "500 no", STALL)
    async with client_for(server, timeout=0.1, max_messages_per_connection=1) as client:
        await client.send(message(1))
        await client.send(message(2))
    await server.wait_until(lambda: server.open == 0)
    assert server.connections == 2


async def test_log_sends(mail_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    """GOTRUE_SMTP_LOGGING_ENABLED's line: type, sender and the recipient's domain, never
    the recipient's address (GoTrue's names it)."""
    server = await mail_server()
    caplog.set_level(logging.INFO, logger="apitask.mail.smtp")
    async with client_for(server, log_sends=True) as client:
        sent = message(type="recovery")
        await client.send(sent)
    (record,) = [r for r in caplog.records if r.getMessage() == "mail.send"]
    fields = record.__dict__
    assert (fields["mail_type"], fields["recipient_domain"], fields["message_id"]) == (
        "recovery",
        "example.org",
        sent.message_id,
    )
    assert "mail_to" not in fields
    assert "user0" not in f"{record.getMessage()} {fields}"


async def test_default_ehlo_name_is_looked_up_once_off_the_loop(mail_server: StartServer) -> None:
    server = await mail_server()
    async with client_for(server, local_hostname=None, max_messages_per_connection=1) as client:
        await client.send(message(1))
        await client.send(message(2))
    assert len(server.messages) == 2


def test_settings_are_checked() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tls": "ssl"}, "tls must be one of"),
        ({"pool_size": 0}, "at least 1"),
        ({"max_messages_per_connection": 0}, "at least 1"),
        ({"timeout": 0}, "positive"),
        ({"idle_timeout": -1}, "positive"),
        ({"password": "x"}, "needs a username"),
        ({"tls": "none", "tls_context": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)}, "unused"),
    ]
    for bad, error in cases:
        with pytest.raises(ValueError, match=error):
            SMTPClient(host="h", sender="a@b.example", **bad)
    with pytest.raises(InvalidMessageError, match="sender"):
        SMTPClient(host="h", sender="a@b.example\r\nBcc: x@evil.example")


def test_ports_and_tls_defaults() -> None:
    assert SMTPClient(host="h", sender="a@b.example").port == 25
    assert SMTPClient(host="h", sender="a@b.example", tls="starttls").port == 587
    implicit = SMTPClient(host="h", sender="a@b.example", tls="implicit")
    assert (implicit.port, implicit.tls) == (465, "implicit")
    assert SMTPClient(host="h", port=465, sender="a@b.example").tls == "implicit"
    assert SMTPClient(host="h", sender="N <a@bü.example>").sender == "a@xn--b-eha.example"


async def test_an_invalid_message_is_refused_before_any_io(mail_server: StartServer) -> None:
    server = await mail_server()
    async with client_for(server) as client:
        with pytest.raises(InvalidMessageError):
            await client.send(message(to='"quoted"@example.org'))
        assert client.counters.invalid == 1
    assert server.connections == 0

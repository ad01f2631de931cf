"""Mail sent over real SMTP (aiosmtplib -> aiosmtpd) shows in the JSON API, parsed."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiosmtplib
import pytest

from apitask_auth.delivery.devinbox import DevInbox

from ._devinbox_support import build_mail, inbox_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx


@pytest.fixture
async def inbox() -> AsyncIterator[DevInbox]:
    async with DevInbox(max_messages=3) as inbox:
        yield inbox


@pytest.fixture
async def client(inbox: DevInbox) -> AsyncIterator[httpx.AsyncClient]:
    async with inbox_client(inbox) as client:
        yield client


async def send(inbox: DevInbox, *messages: object) -> None:
    """Send over one real SMTP connection to the catcher."""
    assert inbox.address is not None
    host, port = inbox.address
    async with aiosmtplib.SMTP(hostname=host, port=port) as smtp:
        for message in messages:
            await smtp.send_message(message)  # type: ignore[arg-type]


async def test_start_returns_a_loopback_port_and_stop_closes_it() -> None:
    """start() binds 127.0.0.1 on a free port; after stop() nothing listens there."""
    inbox = DevInbox()
    host, port = await inbox.start()
    running_at = inbox.address
    assert running_at == (host, port)
    assert host == "127.0.0.1"
    assert port > 0
    with pytest.raises(RuntimeError, match="already started"):
        await inbox.start()
    await inbox.stop()
    await inbox.stop()  # a second stop is a no-op
    assert not inbox.messages()
    assert inbox.address is None
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)


async def test_multipart_mail_is_parsed_into_json(
    inbox: DevInbox, client: httpx.AsyncClient
) -> None:
    """From, to, subject (non-ASCII), date, Message-ID, headers, text, HTML and links arrive."""
    await send(inbox, build_mail(to="Zoë <zoe@example.com>", subject="Bestätigen Sie ✓ 確認"))

    response = await client.get("/_dev/inbox/messages")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    [message] = response.json()
    assert message["subject"] == "Bestätigen Sie ✓ 確認"
    assert message["from"] == "Apitask <noreply@example.com>"
    assert message["to"] == ["zoe@example.com"]
    assert message["envelope_from"] == "noreply@example.com"
    assert message["envelope_to"] == ["zoe@example.com"]
    assert message["date"] == "2026-11-25T06:00:00+00:00"
    assert message["message_id"] == "<test.1@example.com>"
    assert ["Subject", "Bestätigen Sie ✓ 確認"] in message["headers"]
    assert "https://app.example.com/verify?token=t1&type=signup" in message["text"]
    assert '<a href="https://app.example.com/verify?token=t1&amp;type=signup">' in message["html"]
    assert message["links"] == ["https://app.example.com/verify?token=t1&type=signup"]
    assert message["size"] > 0

    one = await client.get(f"/_dev/inbox/messages/{message['id']}")
    assert one.json() == message


async def test_list_is_newest_first_and_bounded(inbox: DevInbox, client: httpx.AsyncClient) -> None:
    """With max_messages=3, five sends keep the last three, newest first."""
    await send(inbox, *(build_mail(subject=f"mail {n}") for n in range(5)))

    subjects = [m["subject"] for m in (await client.get("/_dev/inbox/messages")).json()]

    assert subjects == ["mail 4", "mail 3", "mail 2"]
    assert len(inbox.messages()) == inbox.max_messages == 3


async def test_to_filter_matches_any_recipient_case_insensitively(
    inbox: DevInbox, client: httpx.AsyncClient
) -> None:
    """?to= keeps mail whose envelope, To or Cc has that address, in any case."""
    copied = build_mail(to="carol@example.com", subject="copied")
    copied["Cc"] = "Bob@Example.com"
    await send(inbox, build_mail(to="alice@example.com", subject="alice"), copied)

    for_bob = (await client.get("/_dev/inbox/messages", params={"to": "BOB@example.com"})).json()
    nobody = (await client.get("/_dev/inbox/messages", params={"to": "dan@example.com"})).json()

    assert [m["subject"] for m in for_bob] == ["copied"]
    assert for_bob[0]["cc"] == ["Bob@Example.com"]
    assert nobody == []


async def test_wait_long_polls_until_mail_for_the_address_arrives(
    inbox: DevInbox, client: httpx.AsyncClient
) -> None:
    """?wait= answers as soon as matching mail is there, whichever comes first."""
    waiting = client.get("/_dev/inbox/messages", params={"to": "late@example.com", "wait": 10})
    response, _ = await asyncio.gather(
        waiting, send(inbox, build_mail(to="other@example.com"), build_mail(to="late@example.com"))
    )
    assert [m["to"] for m in response.json()] == [["late@example.com"]]


async def test_wait_with_count_answers_once_that_many_match(
    inbox: DevInbox, client: httpx.AsyncClient
) -> None:
    """?count=N makes the long poll wait for the N-th matching mail (a second code to
    the same address); on timeout it answers with what there is."""
    await send(inbox, build_mail(to="twice@example.com", subject="first"))
    waiting = client.get(
        "/_dev/inbox/messages", params={"to": "twice@example.com", "wait": 10, "count": 2}
    )
    response, _ = await asyncio.gather(
        waiting, send(inbox, build_mail(to="twice@example.com", subject="second"))
    )
    assert [m["subject"] for m in response.json()] == ["second", "first"]
    short = await client.get(
        "/_dev/inbox/messages", params={"to": "twice@example.com", "wait": 0.01, "count": 3}
    )
    assert [m["subject"] for m in short.json()] == ["second", "first"]


async def test_wait_gives_an_empty_list_when_nothing_arrives(client: httpx.AsyncClient) -> None:
    """A long poll that times out answers 200 with []; a too-long wait is a 422."""
    response = await client.get("/_dev/inbox/messages", params={"wait": 0.01})
    assert response.json() == []
    assert (await client.get("/_dev/inbox/messages", params={"wait": 31})).status_code == 422


async def test_delete_clears_everything(inbox: DevInbox, client: httpx.AsyncClient) -> None:
    """DELETE /_dev/inbox/messages forgets all mail and says how many."""
    await send(inbox, build_mail(), build_mail())
    response = await client.delete("/_dev/inbox/messages")
    assert response.json() == {"deleted": 2}
    assert (await client.get("/_dev/inbox/messages")).json() == []
    await send(inbox, build_mail())
    [kept] = inbox.messages()
    assert inbox.get(kept.id) is kept
    assert inbox.clear() == 1
    assert inbox.get(kept.id) is None


async def test_unknown_ids_are_404(inbox: DevInbox, client: httpx.AsyncClient) -> None:
    """An unknown id, and the HTML of a text-only mail, are 404."""
    await send(inbox, build_mail(html=None))
    [message] = inbox.messages()
    for path in ("nope", "nope/html", "nope/raw", f"{message.id}/html"):
        assert (await client.get(f"/_dev/inbox/messages/{path}")).status_code == 404


async def test_raw_source_is_what_was_sent(inbox: DevInbox, client: httpx.AsyncClient) -> None:
    """/raw serves the message exactly as received, as text."""
    await send(inbox, build_mail(subject="source"))
    [message] = inbox.messages()
    response = await client.get(f"/_dev/inbox/messages/{message.id}/raw")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.content == message.raw
    assert b"Subject: source" in response.content


async def test_wait_for_returns_the_newest_mail_or_times_out(inbox: DevInbox) -> None:
    """inbox.wait_for(to=) is the Python twin of ?wait=."""
    caught, _ = await asyncio.gather(
        inbox.wait_for(to="zed@example.com", timeout=10),
        send(inbox, build_mail(to="zed@example.com")),
    )
    assert caught.to == ("zed@example.com",)
    with pytest.raises(TimeoutError, match=r"no message for nobody@example\.com"):
        await inbox.wait_for(to="nobody@example.com", timeout=0.01)


async def test_open_idle_connections_do_not_hold_up_stop() -> None:
    """stop() closes connections a pooled client keeps open, so it returns promptly."""
    inbox = DevInbox()
    host, port = await inbox.start()
    smtp = aiosmtplib.SMTP(hostname=host, port=port)
    await smtp.connect()
    await smtp.send_message(build_mail())
    await inbox.stop()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await smtp.noop()
    assert len(inbox.messages()) == 1  # the mail outlives the server


async def test_oversize_mail_is_refused() -> None:
    """A message over max_message_size gets a permanent 552, as from a real server."""
    small = DevInbox(max_message_size=1000)
    host, port = await small.start()
    try:
        with pytest.raises(aiosmtplib.SMTPResponseException) as error:
            await aiosmtplib.send(build_mail(text="x" * 5000), hostname=host, port=port)
        assert error.value.code == 552
    finally:
        await small.stop()
    assert small.messages() == []


def test_bad_settings_are_refused() -> None:
    """Wrong types and ranges raise TypeError / ValueError naming the parameter."""
    with pytest.raises(TypeError, match="max_messages"):
        DevInbox(max_messages="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_messages"):
        DevInbox(max_messages=0)
    with pytest.raises(TypeError, match="port"):
        DevInbox(port=True)
    with pytest.raises(ValueError, match="port"):
        DevInbox(port=70000)
    with pytest.raises(ValueError, match="max_message_size"):
        DevInbox(max_message_size=0)
    with pytest.raises(ValueError, match="prefix"):
        DevInbox(prefix="/_dev/inbox/")

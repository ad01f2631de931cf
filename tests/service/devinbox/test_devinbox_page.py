"""The /_dev/inbox page: list, open a message, links, clearing, and nothing executable."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from apitask_auth.delivery.devinbox import DevInbox
from apitask_auth.delivery.devinbox._message import parse_message
from apitask_auth.delivery.devinbox._pages import render_inbox

from ._devinbox_support import build_mail, inbox_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
async def inbox() -> AsyncIterator[DevInbox]:
    async with DevInbox(max_messages=10) as inbox:
        yield inbox


@pytest.fixture
async def client(inbox: DevInbox) -> AsyncIterator[httpx.AsyncClient]:
    async with inbox_client(inbox) as client:
        yield client


def add(inbox: DevInbox, **kwargs: str | None) -> str:
    to = kwargs.get("to") or "bob@example.com"
    return inbox.add(bytes(build_mail(**kwargs)), envelope_to=[to]).id  # type: ignore[arg-type]


async def test_empty_inbox_page_refreshes_itself(
    inbox: DevInbox, client: httpx.AsyncClient
) -> None:
    """With no mail the page says so, shows the SMTP address and reloads every few seconds."""
    response = await client.get("/_dev/inbox")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert "No mail yet" in page
    assert '<meta http-equiv="refresh" content="5">' in page
    assert inbox.address is not None
    assert f"SMTP on 127.0.0.1:{inbox.address[1]}" in page
    assert "0 messages · keeps the last 10" in page


async def test_list_shows_recipient_subject_and_time_newest_first(
    inbox: DevInbox, client: httpx.AsyncClient
) -> None:
    """Each row has recipient, subject and receive time; the newest row is first."""
    first = add(inbox, to="ann@example.com", subject="First")
    second = add(inbox, to="ben@example.com", subject="Second")
    page = (await client.get("/_dev/inbox")).text
    rows = re.findall(r'data-id="(\w+)"', page)
    assert rows == [second, first]
    assert "ann@example.com" in page
    assert "ben@example.com" in page
    assert "<time datetime=" in page
    assert "2 messages" in page


async def test_opening_a_message_shows_html_text_links_and_headers(
    inbox: DevInbox, client: httpx.AsyncClient
) -> None:
    """?id= opens one mail: sandboxed HTML iframe, text, clickable links, headers."""
    message_id = add(inbox, subject="Welcome")
    page = (await client.get("/_dev/inbox", params={"id": message_id})).text

    assert '<h2 id="subject">Welcome</h2>' in page
    assert 'class="selected"' in page
    assert 'http-equiv="refresh"' not in page  # reading is not interrupted
    link = "https://app.example.com/verify?token=t1&amp;type=signup"
    assert f'<a href="{link}" rel="noreferrer">{link}</a>' in page
    iframe = re.search(r"<iframe [^>]*>", page)
    assert iframe is not None
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in iframe.group()
    srcdoc = re.search(r'srcdoc="([^"]*)"', iframe.group())
    assert srcdoc is not None
    assert html.unescape(srcdoc.group(1)).startswith('<base target="_blank"><p><a href=')
    assert "<pre>Follow https://app.example.com/verify?token=t1&amp;type=signup" in page
    assert "<th>Message-ID</th><td>&lt;test.1@example.com&gt;</td>" in page
    assert f"/_dev/inbox/messages/{message_id}/raw" in page


async def test_single_part_mail_shows_the_part_it_has(
    inbox: DevInbox, client: httpx.AsyncClient
) -> None:
    """Text-only mail opens its text (no iframe); HTML-only mail has no text section."""
    text_only = (await client.get("/_dev/inbox", params={"id": add(inbox, html=None)})).text
    assert "<iframe" not in text_only
    assert '<details open id="text">' in text_only
    html_only = (await client.get("/_dev/inbox", params={"id": add(inbox, text=None)})).text
    assert "<iframe" in html_only
    assert 'id="text"' not in html_only


async def test_hostile_content_renders_inert(inbox: DevInbox, client: httpx.AsyncClient) -> None:
    """Markup in subject, addresses, body and headers is escaped; no script runs on the page."""
    message_id = add(
        inbox,
        to='"<b>x</b>" <evil@example.com>',
        subject=HOSTILE,
        sender=f'"{HOSTILE}" <a@example.com>',
        text=HOSTILE,
        html=HOSTILE + '<a href="javascript:alert(1)">js</a>',
    )
    for params in ({}, {"id": message_id}, {"to": HOSTILE}):
        response = await client.get("/_dev/inbox", params=params)
        page = response.text.lower()
        assert "<script" not in page
        assert "<img" not in page
        assert 'href="javascript:' not in page
        assert "script-src" not in response.headers["content-security-policy"]
        assert "default-src 'none'" in response.headers["content-security-policy"]
    opened = (await client.get("/_dev/inbox", params={"id": message_id})).text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in opened
    assert '<div class="links"' not in opened  # a javascript: href is not a link


async def test_html_alone_is_served_under_a_sandboxing_csp(
    inbox: DevInbox, client: httpx.AsyncClient
) -> None:
    """/messages/{id}/html is the mail's own HTML, with CSP sandbox and no scripts."""
    message_id = add(inbox, html=HOSTILE)
    response = await client.get(f"/_dev/inbox/messages/{message_id}/html")
    assert response.text == HOSTILE + "\n"
    csp = response.headers["content-security-policy"]
    assert csp.startswith("sandbox allow-popups allow-popups-to-escape-sandbox;")
    assert "default-src 'none'" in csp


async def test_filter_by_recipient(inbox: DevInbox, client: httpx.AsyncClient) -> None:
    """The search box (?to=) lists one recipient's mail and keeps the filter in links."""
    add(inbox, to="ann@example.com", subject="for ann")
    add(inbox, to="ben@example.com", subject="for ben")
    page = (await client.get("/_dev/inbox", params={"to": " ANN@example.com "})).text
    assert "for ann" in page
    assert "for ben" not in page
    assert '1 of 2 messages (<a href="/_dev/inbox">show all</a>)' in page
    empty = (await client.get("/_dev/inbox", params={"to": "<i>dan</i>@example.com"})).text
    assert "No mail for &lt;i&gt;dan&lt;/i&gt;@example.com yet." in empty
    assert 'value="ANN@example.com"' in page
    assert "?to=ANN%40example.com&amp;id=" in page


async def test_clear_all_button_empties_the_inbox(
    inbox: DevInbox, client: httpx.AsyncClient
) -> None:
    """The Clear all form posts to /clear, which empties the inbox and redirects to the page."""
    add(inbox)
    page = (await client.get("/_dev/inbox")).text
    assert '<form method="post" action="/_dev/inbox/clear">' in page
    response = await client.post("/_dev/inbox/clear")
    assert response.status_code == 303
    assert response.headers["location"] == "/_dev/inbox"
    assert inbox.messages() == []


async def test_cross_site_clear_is_refused(inbox: DevInbox, client: httpx.AsyncClient) -> None:
    """A form on another site cannot empty the inbox (Sec-Fetch-Site: cross-site -> 403)."""
    add(inbox)
    response = await client.post("/_dev/inbox/clear", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    assert len(inbox.messages()) == 1


def test_older_mail_shows_its_day() -> None:
    """A message from another day shows month and day, not only the time."""
    received = datetime.now(UTC) - timedelta(days=1)
    message = parse_message(bytes(build_mail(subject="old")), received_at=received)
    page = render_inbox(
        [message],
        selected=None,
        prefix="/x",
        smtp_address=None,
        to_filter=None,
        total=1,
        capacity=1,
    )
    assert received.strftime("%b %d, %H:%M") in page
    assert "1 message · keeps the last 1" in page


async def test_stopped_inbox_says_so(client: httpx.AsyncClient, inbox: DevInbox) -> None:
    """After stop() the page still shows kept mail and says the catcher is stopped."""
    add(inbox, subject="kept")
    await inbox.stop()
    page = (await client.get("/_dev/inbox")).text
    assert "SMTP catcher stopped" in page
    assert "kept" in page

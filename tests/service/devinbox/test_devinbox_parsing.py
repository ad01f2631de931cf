"""Parsing caught mail and keeping it: pure functions and the bounded, thread-safe store."""

from __future__ import annotations

import asyncio
import threading
from email.message import EmailMessage

from apitask_auth.delivery.devinbox._message import CaughtMessage, extract_links, parse_message
from apitask_auth.delivery.devinbox._store import MessageStore

from ._devinbox_support import build_mail


def test_text_links_lose_trailing_punctuation_but_keep_their_own_parens() -> None:
    """Sentence punctuation after a URL is not part of it; a balanced ')' is."""
    text = "Go to https://a.example/x. Or (https://b.example/y), or https://c.example/w_(z)!"
    assert extract_links(text) == [
        "https://a.example/x",
        "https://b.example/y",
        "https://c.example/w_(z)",
    ]


def test_html_links_are_unescaped_anchor_hrefs_with_http_schemes() -> None:
    """Entities in href are decoded; javascript:, mailto: and empty hrefs are not links."""
    body = (
        '<a href=" https://a.example/?a=1&amp;b=2 ">one</a><a href="javascript:alert(1)">x</a>'
        '<a href="mailto:x@example.com">m</a><a href="">e</a><a name="top">t</a>'
        '<link href="https://style.example/">'
    )
    assert extract_links(body, html=True) == ["https://a.example/?a=1&b=2"]


def test_links_from_html_and_text_are_merged_without_duplicates() -> None:
    """The same link in both parts is listed once, HTML order first."""
    message = parse_message(
        bytes(
            build_mail(
                html='<a href="https://x.example/2">2</a><a href="https://x.example/1">1</a>',
                text="https://x.example/1 https://x.example/3",
            )
        )
    )
    assert message.links == ("https://x.example/2", "https://x.example/1", "https://x.example/3")


def test_encoded_subject_and_addresses_are_decoded() -> None:
    """RFC 2047 headers and a Latin-1 body decode to text."""
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.com>\r\n"
        b"To: a@example.com, =?utf-8?b?w4Z2YXI=?= <b@example.com>\r\n"
        b"Subject: =?utf-8?b?8J+OiSBXaWxsa29tbWVu?=\r\n"
        b"Content-Type: text/plain; charset=latin-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe\r\n"
    )
    message = parse_message(raw, envelope_to=["a@example.com"])
    assert message.from_ == "Jürgen <j@example.com>"
    assert message.to == ("a@example.com", "b@example.com")
    assert message.subject == "🎉 Willkommen"
    assert message.text == "Grüße\r\n" or message.text == "Grüße\n"
    assert message.html is None
    assert message.recipients() == {"a@example.com", "b@example.com"}


def test_broken_mail_is_kept_not_rejected() -> None:
    """Garbage, a bad date, an unknown charset and bad base64 still parse to something."""
    assert parse_message(b"").subject == ""
    odd = parse_message(
        b"To: <<<@@@\r\nSubject: =?utf-8?q?bad\r\nDate: not a date\r\n"
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nbody\xff"
    )
    assert odd.date is None
    assert odd.text is None
    assert odd.subject == "=?utf-8?q?bad"
    assert odd.to_json()["date"] is None
    empty_multipart = parse_message(
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
        b"Content-Type: application/pdf\r\n\r\n%PDF\r\n--x--\r\n"
    )
    assert (empty_multipart.text, empty_multipart.html, empty_multipart.links) == (None, None, ())


def test_unfolded_headers_keep_message_order() -> None:
    """Folded header lines are joined with one space; order is as sent."""
    message = EmailMessage()
    message["X-Long"] = "a " * 60
    message["Subject"] = "s"
    parsed = parse_message(message.as_bytes())
    assert [name for name, _ in parsed.headers] == ["X-Long", "Subject"]
    assert "\n" not in parsed.headers[0][1]


def caught(n: int, to: str = "a@example.com") -> CaughtMessage:
    return parse_message(bytes(build_mail(to=to, subject=str(n))), envelope_to=[to])


def test_store_from_many_threads_stays_bounded_and_whole() -> None:
    """Four threads adding 200 messages each leave exactly the newest 50, no errors."""
    store: MessageStore[CaughtMessage] = MessageStore(50)
    ready = threading.Barrier(4)
    message = caught(0)

    def writer() -> None:
        ready.wait()
        for _ in range(200):
            store.add(message)
            store.select(to="a@example.com")

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store) == 50
    assert store.clear() == 50
    assert len(store) == 0


async def test_waiter_is_not_fooled_by_other_mail_and_wakes_from_another_thread() -> None:
    """wait_for re-checks after each add (from any thread) until its predicate holds."""
    store: MessageStore[CaughtMessage] = MessageStore(5)
    checks: list[int] = []
    checked = [asyncio.Event(), asyncio.Event()]

    def for_bob() -> list[CaughtMessage]:
        checks.append(len(store))
        if len(checks) <= len(checked):
            checked[len(checks) - 1].set()
        return store.select(to="bob@example.com")

    waiter = asyncio.create_task(store.wait_for(for_bob, timeout=30))
    await checked[0].wait()  # registered and found nothing
    await asyncio.to_thread(store.add, caught(1, "ann@example.com"))
    await checked[1].wait()  # woken, found nothing for bob, waits again
    assert not waiter.done()
    await asyncio.to_thread(store.add, caught(2, "bob@example.com"))
    found = await waiter
    assert [m.subject for m in found] == ["2"]
    assert checks == [0, 1, 2]


def test_get_finds_kept_messages_only() -> None:
    """get() returns a kept message; one that fell off the end is gone."""
    store: MessageStore[CaughtMessage] = MessageStore(1)
    first, second = caught(1), caught(2)
    store.add(first)
    store.add(second)
    assert store.get(second.id) is second
    assert store.get(first.id) is None


async def test_waking_a_waiter_that_already_gave_up_is_harmless() -> None:
    """An add racing a timed-out (cancelled) waiter does not raise InvalidStateError."""
    store: MessageStore[CaughtMessage] = MessageStore(1)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    future.cancel()
    store._waiters.add((loop, future))
    store.add(caught(1))
    # Callbacks run in order: once this one has run, the wake-up before it has too.
    after_wake_up: asyncio.Future[None] = loop.create_future()
    loop.call_soon_threadsafe(after_wake_up.set_result, None)
    await after_wake_up
    assert future.cancelled()

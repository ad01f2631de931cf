"""NoopClient drops mail on purpose and says so; RecordingClient records and wakes waiters."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from apitask.mail import MailClient, Message, NoopClient, RecordingClient


def mail(to: str = "ann@example.org", type: str = "recovery", subject: str = "Reset") -> Message:
    return Message(to=to, subject=subject, text="your code: 918273", type=type)


async def test_noop_client_logs_type_and_domain_never_address_subject_or_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A subject may carry the code ("{{ .Token }} is your verification code"): not logged."""
    with caplog.at_level(logging.INFO, "apitask.mail"):
        client = NoopClient(site_url="https://auth.example.org")
        message = mail("Bob.Smith@mail.example.net", subject="918273 is your verification code")
        await client.send(message)
    assert isinstance(client, MailClient)
    start, dropped = caplog.records
    assert start.getMessage() == (
        "mail: no SMTP host configured for https://auth.example.org: "
        "mails are logged and dropped (NoopClient)"
    )
    assert dropped.levelno == logging.INFO
    assert dropped.getMessage() == (
        "mail: dropped recovery mail to a recipient at mail.example.net (no SMTP host configured)"
    )
    assert (
        dropped.__dict__["mail_type"],
        dropped.__dict__["recipient_domain"],
        dropped.__dict__["message_id"],
    ) == (
        "recovery",
        "mail.example.net",
        message.message_id,
    )
    text = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "Bob.Smith" not in text
    assert "918273" not in text
    assert "verification code" not in text


def test_noop_client_without_site_url(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "apitask.mail"):
        NoopClient()
    assert caplog.messages == [
        "mail: no SMTP host configured: mails are logged and dropped (NoopClient)"
    ]


async def test_recording_client_keeps_a_bounded_history() -> None:
    client = RecordingClient(max_messages=2)
    sent = [mail(f"user{n}@example.org") for n in range(3)]
    for message in sent:
        await client.send(message)
    assert client.messages == sent[1:]
    client.clear()
    assert client.messages == []
    with pytest.raises(ValueError, match="max_messages must be >= 1"):
        RecordingClient(max_messages=0)


async def test_wait_for_returns_the_latest_recorded_match_at_once() -> None:
    client = RecordingClient()
    first, second = mail(subject="first"), mail(subject="second")
    await client.send(first)
    await client.send(second)
    await client.send(mail("other@example.org", type="invite"))
    assert await client.wait_for(to="ANN@example.org", timeout=0.01) is second
    assert await client.wait_for(lambda m: m.subject == "first", timeout=0.01) is first
    assert (await client.wait_for(type="invite", timeout=0.01)).to == "other@example.org"


async def test_wait_for_wakes_on_a_later_matching_send_only() -> None:
    client = RecordingClient()
    waiting = asyncio.create_task(client.wait_for(to="bob@example.org", type="invite"))
    await asyncio.sleep(0)  # let the waiter register (ordering, not timing)
    await client.send(mail("bob@example.org", type="recovery"))  # wrong type
    await client.send(mail("ann@example.org", type="invite"))  # wrong recipient
    assert not waiting.done()
    wanted = mail("bob@example.org", type="invite")
    await client.send(wanted)
    assert await waiting is wanted


async def test_wait_for_times_out_with_what_was_recorded() -> None:
    client = RecordingClient()
    await client.send(mail(type="recovery"))
    await client.send(mail(type="invite"))
    with pytest.raises(TimeoutError, match=r"2 recorded, of types \['invite', 'recovery'\]"):
        await client.wait_for(type="magic_link", timeout=0.01)
    # The timed-out waiter is gone: a later send has nobody to wake.
    await client.send(mail(type="magic_link"))
    assert client._waiters == []


async def test_a_send_from_another_thread_and_loop_wakes_the_waiter() -> None:
    client = RecordingClient()
    waiting = asyncio.create_task(client.wait_for(type="invite"))
    await asyncio.sleep(0)  # the waiter registers
    wanted = mail(type="invite")
    sender = threading.Thread(target=asyncio.run, args=(client.send(wanted),))
    sender.start()
    assert await waiting is wanted
    await asyncio.to_thread(sender.join)


async def test_a_waiter_that_timed_out_is_not_resolved_again() -> None:
    client = RecordingClient()
    waiting = asyncio.create_task(client.wait_for(type="invite", timeout=5))
    await asyncio.sleep(0)
    [waiter] = client._waiters
    waiter.future.cancel()  # as if its wait had ended at the very moment of the send
    await client.send(mail(type="invite"))
    with pytest.raises(asyncio.CancelledError):
        await waiting

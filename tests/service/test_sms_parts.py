"""The SMS chain's parts on their own: the stored text, the task's factory, Twilio's
edge cases, the dev inbox's texts, the runtime's registration rule."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from apitask_auth.config import load_settings
from apitask_auth.delivery.devinbox import DevInbox
from apitask_auth.delivery.runtime import DeliveryRuntime, _report_worker_end
from apitask_auth.delivery.sms import PermanentSmsError, SmsTask, TextMessage, TransientSmsError
from apitask_auth.delivery.sms.devinbox import DevInboxProvider
from apitask_auth.delivery.sms.twilio import TwilioProvider, _retry_after, _verdict

from ._twilio import ACCOUNT_SID, AUTH_TOKEN, SENDER, TwilioServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioServer]:
    async with TwilioServer() as server:
        yield server


def provider(twilio: TwilioServer, **more: Any) -> TwilioProvider:
    return TwilioProvider(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, sender=SENDER, base_url=twilio.url, **more
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"to": "+15551234567"},
        {"to": "0123"},
        {"text": ""},
        {"text": "x" * 1601},
        {"channel": "pigeon"},
        {"purpose": "marketing"},
    ],
)
def test_a_text_is_checked_when_made(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="text"):
        TextMessage(**{"to": "15551234567", "text": "hi", **fields})  # type: ignore[arg-type]


def test_a_stored_text_round_trips_and_bad_ones_are_refused() -> None:
    text = TextMessage(to="15551234567", text="Code 1", channel="whatsapp", code="1")
    assert TextMessage.from_dict(text.to_dict()) == text
    with pytest.raises(ValueError, match="no string 'text'"):
        TextMessage.from_dict({"to": "15551234567", "text": 5})


def test_the_factory_refuses_what_retrying_cannot_repair() -> None:
    """A payload with no text, or whose purpose is not its type's: a decode error
    (the worker dead-letters it)."""
    build = SmsTask.factory(DevInboxProvider(DevInbox()))
    text = TextMessage(to="15551234567", text="hi", purpose="mfa")
    task = build("sms.mfa", {"sms": text.to_dict()})
    assert repr(task) == "<SmsTask sms.mfa to +15…67>"
    with pytest.raises(ValueError, match="no 'sms' object"):
        build("sms.otp", {"message": {}})
    with pytest.raises(ValueError, match=r"holds a 'sms\.mfa' text"):
        build("sms.otp", {"sms": text.to_dict()})


async def test_a_step_timeout_is_transient(twilio: TwilioServer) -> None:
    """httpx's own timeouts (each step) are transient too, not only the whole call's."""
    sms = provider(twilio, timeout=0.2)
    assert sms.client is not None  # made now, with 0.2 s steps
    sms.timeout = 30.0  # the whole call may last: the read step's timeout fires
    twilio.script("hold")
    with pytest.raises(TransientSmsError, match=r"timed out \(ReadTimeout\)"):
        await sms.send(TextMessage(to="15551234567", text="hi"))
    await sms.aclose()
    await sms.aclose()  # twice is harmless


async def test_an_answer_without_twilios_error_object_still_says_the_status(
    twilio: TwilioServer,
) -> None:
    """A 404 (a wrong base URL) is final with its message; a proxy's HTML error page or
    a JSON body that is not an object still names the status."""
    sms = provider(twilio)
    sms.url = f"{twilio.url}/elsewhere"
    with pytest.raises(PermanentSmsError, match="HTTP 404: The requested resource"):
        await sms.send(TextMessage(to="15551234567", text="hi"))
    await sms.aclose()
    with pytest.raises(TransientSmsError, match=r"^Twilio answered HTTP 502$"):
        _verdict(httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(PermanentSmsError, match=r"^Twilio answered HTTP 400$"):
        _verdict(httpx.Response(400, json=["not", "an", "object"]))


def test_retry_after_is_honoured_within_reason() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert _retry_after(answer("3")) == 3.0
    assert _retry_after(answer("soon")) is None
    assert _retry_after(answer("86400")) is None  # a day: left to the runner's backoff


async def test_the_dev_inbox_keeps_texts_beside_the_mail() -> None:
    inbox = DevInbox()
    waiter = asyncio.ensure_future(inbox.wait_for_text(to="15551234567", timeout=5))
    await DevInboxProvider(inbox).send(TextMessage(to="15551234567", text="Your code is 1"))
    caught = await waiter
    assert (caught.to, caught.text) == ("+15551234567", "Your code is 1")
    assert inbox.texts(to="+15551234567") == [caught]
    assert inbox.messages() == []
    with pytest.raises(TimeoutError, match="no text for 1555"):
        await inbox.wait_for_text(to="15550000000", timeout=0.01)
    assert inbox.clear() == 1


async def test_the_runtime_takes_registrations_only_while_it_is_stopped(tmp_path: Any) -> None:
    """Before start, and again after aclose (a lifespan run again brings new clients)."""
    settings = load_settings(
        env_file=None,
        site_url="http://localhost:3000",
        api_external_url="http://auth.test",
        jwt_secret="s" * 32,
        database_url=f"sqlite:///{tmp_path / 'auth.db'}",
        mailer_delivery="inline",
    )
    factory = SmsTask.factory(DevInboxProvider(DevInbox()))
    runtime = DeliveryRuntime(settings)
    runtime.register("sms.", factory)
    await runtime.start()
    with pytest.raises(RuntimeError, match="before the delivery runtime starts"):
        runtime.register("hook.", factory)
    await runtime.aclose()
    runtime.register("hook.", factory)
    assert set(runtime.prefixes) == {"sms.", "hook."}


async def test_a_worker_that_stops_on_an_error_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise OSError("disk gone")

    run = asyncio.ensure_future(fails())
    with pytest.raises(OSError, match="disk gone"):
        await run
    with caplog.at_level(logging.ERROR, logger="apitask_auth"):
        _report_worker_end(run)
    assert "the in-process outbox worker stopped: disk gone" in caplog.text

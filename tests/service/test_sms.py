"""Text messages through apitask, in every delivery mode, against a local Twilio.

The service's texter (delivery/sms) renders the text in the request and hands
it to ``apitask.run`` as an ``sms.<purpose>`` task, exactly as mail goes. The
phone flows that call it live elsewhere; here a small route calls the texter
inside a transaction, as a flow does, and can roll that transaction back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import Request  # noqa: TC002  # FastAPI reads the annotation at runtime
from fastapi.responses import JSONResponse

from apitask.outbox import JobState
from apitask_auth.config import ConfigError, load_settings
from apitask_auth.delivery.sms import SmsChain, SmsError
from apitask_auth.delivery.texter import UnconfiguredTexter

from ._twilio import ACCOUNT_SID, AUTH_TOKEN, SENDER, TwilioServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from .conftest import Service

BASE: dict[str, Any] = {
    "site_url": "http://localhost:3000",
    "api_external_url": "http://auth.test",
    "jwt_secret": "s" * 32,
}


class _Rollback(Exception):
    pass


def number() -> str:
    """A fresh E.164 number without its "+" (tests on PostgreSQL share a database)."""
    return "1555" + str(secrets.randbelow(10**7)).zfill(7)


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioServer]:
    async with TwilioServer() as server:
        yield server


def add_text_route(svc: Service) -> None:
    """``POST /_test/text {phone, code, channel?, purpose?, rollback?}``: a flow's shape."""
    service = svc.app.state.service

    async def text(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            async with service.engine.begin() as conn:
                await service.texter.send(
                    body["phone"],
                    body["code"],
                    user=None,
                    channel=body.get("channel", "sms"),
                    purpose=body.get("purpose", "otp"),
                    connection=conn,
                )
                if body.get("rollback"):
                    raise _Rollback
        except _Rollback:
            return JSONResponse({"rolled_back": True})
        except SmsError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        return JSONResponse({})

    svc.app.add_api_route("/_test/text", text, methods=["POST"])


async def texting(make_service: Callable[..., Any], twilio: TwilioServer, **more: Any) -> Service:
    svc: Service = await make_service(**twilio.settings(**more))
    add_text_route(svc)
    return svc


def post(svc: Service, phone: str, code: str = "123456", **more: Any) -> Any:
    return svc.http.post(
        "/_test/text", json={"phone": phone, "code": code, **more}, headers={"X-Request-Id": phone}
    )


# -- Twilio's API, as GoTrue calls it ---------------------------------------------------


async def test_inline_posts_gotrues_form_with_basic_auth(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    """Inline: the handler posts To, Channel, From and the rendered Body, Basic auth."""
    svc = await texting(make_service, twilio, mailer_delivery="inline")
    phone = number()
    assert (await post(svc, phone, "246810")).status_code == 200
    assert twilio.delivered == [
        {"To": f"+{phone}", "Channel": "sms", "From": SENDER, "Body": "Your code is 246810"}
    ]
    (attempt,) = twilio.attempts
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert attempt.authorization == f"Basic {expected}"


async def test_templates_render_gotrues_syntax_per_purpose(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    """GOTRUE_SMS_TEMPLATE for codes, GOTRUE_MFA_PHONE_TEMPLATE for MFA challenges."""
    svc = await texting(
        make_service,
        twilio,
        sms_template="Sign in with {{ .Code }}",
        mfa_phone_template="{{ if .Code }}MFA: {{ .Code }}{{ end }}",
    )
    phone = number()
    await post(svc, phone, "111111")
    await post(svc, phone, "222222", purpose="mfa")
    assert twilio.texts_to(phone) == ["Sign in with 111111", "MFA: 222222"]


async def test_whatsapp_goes_as_gotrue_sends_it(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    """WhatsApp: both ends prefixed (the sender only when it is a number); a content SID
    sends the code as variable 1 instead of a body."""
    svc = await texting(make_service, twilio)
    phone = number()
    await post(svc, phone, "333333", channel="whatsapp")
    assert twilio.delivered[-1] == {
        "To": f"whatsapp:+{phone}",
        "Channel": "whatsapp",
        "From": SENDER,
        "Body": "Your code is 333333",
    }
    by_number = await texting(
        make_service,
        twilio,
        sms_twilio_message_service_sid="+15550000000",
        sms_twilio_content_sid="HX" + "1" * 32,
    )
    await post(by_number, phone, "444444", channel="whatsapp")
    assert twilio.delivered[-1] == {
        "To": f"whatsapp:+{phone}",
        "Channel": "whatsapp",
        "From": "whatsapp:+15550000000",
        "ContentSid": "HX" + "1" * 32,
        "ContentVariables": '{"1": "444444"}',
    }


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (400, "is not a valid phone number. More information: https://www.twilio.com/docs"),
        (500, "HTTP 500: Internal Server Error"),
        (429, "HTTP 429: Too Many Requests"),
        ("failed", "twilio error: Message filtered 30007"),
        ("drop", "Twilio connection failed"),
    ],
)
async def test_inline_failure_reaches_the_handler_with_twilios_words(
    make_service: Callable[..., Any], twilio: TwilioServer, answer: str | int, words: str
) -> None:
    """Inline: the provider's failure is raised in the handler (a flow answers GoTrue's
    error), with Twilio's message; the flow's transaction is the flow's to roll back."""
    svc = await texting(make_service, twilio, mailer_delivery="inline")
    twilio.script(answer)
    response = await post(svc, number())
    assert response.status_code == 502
    assert words in response.json()["error"]
    assert twilio.delivered == []


async def test_a_wrong_token_is_refused_for_good(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    """401 from Twilio (a wrong auth token): permanent, with Twilio's message."""
    svc = await texting(make_service, twilio, sms_twilio_auth_token="wrong")
    response = await post(svc, number())
    assert "HTTP 401: Authenticate" in response.json()["error"]
    assert [attempt.answer for attempt in twilio.attempts] == ["401"]


async def test_a_provider_slower_than_the_timeout_is_a_transient_failure(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    """GOTRUE_INTERNAL_HTTP_TIMEOUT bounds every step and the whole call."""
    svc = await texting(make_service, twilio, internal_http_timeout="200ms")
    twilio.script("hold")
    response = await post(svc, number())
    assert "Twilio" in response.json()["error"]
    assert "0.2 s" in response.json()["error"] or "timed out" in response.json()["error"]


# -- the delivery modes ---------------------------------------------------------------


async def test_request_mode_holds_the_response_until_the_text_is_sent(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    svc = await texting(make_service, twilio, mailer_delivery="request")
    twilio.script("hold")
    phone = number()
    response = asyncio.ensure_future(post(svc, phone))
    await twilio.arrived.wait()
    assert not response.done()  # Twilio holds the text: the response waits for it
    twilio.release.set()
    assert (await response).status_code == 200
    assert twilio.texts_to(phone) == ["Your code is 123456"]


async def test_request_mode_failure_is_logged_not_returned(
    make_service: Callable[..., Any], twilio: TwilioServer, caplog: pytest.LogCaptureFixture
) -> None:
    svc = await texting(make_service, twilio, mailer_delivery="request")
    twilio.script(400)
    phone = number()
    assert (await post(svc, phone)).status_code == 200
    (record,) = [r for r in caplog.records if r.name == "apitask_auth.sms"]
    assert "not sent (final)" in record.getMessage()
    # The number is masked in every log line (Twilio's message quotes it); the code is in none.
    assert phone not in caplog.text and "123456" not in caplog.text


async def test_pool_mode_answers_first_and_retries_transient_failures(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    """Pool: the response waits for nothing; 500 and 429 are retried with backoff."""
    svc = await texting(make_service, twilio, mailer_delivery="pool")
    twilio.script("hold")
    held = number()
    assert (await post(svc, held)).status_code == 200  # answered while Twilio holds it
    twilio.script(500, 429)
    retried = number()
    assert (await post(svc, retried)).status_code == 200
    twilio.release.set()
    await twilio.wait_delivered(2)
    assert twilio.texts_to(retried) == ["Your code is 123456"]
    assert twilio.texts_to(held) == ["Your code is 123456"]
    assert sorted(a.answer for a in twilio.attempts) == ["201", "429", "500", "hold"]


async def _jobs(svc: Service, phone: str) -> list[Any]:
    outbox = svc.app.state.service.mailer.runtime.outbox
    return [job for job in await outbox.list(limit=10_000) if job.request_id == phone]


async def _drain(svc: Service) -> None:
    """Run an outbox worker until no job is due (the in-process one is off)."""
    outbox = svc.app.state.service.mailer.runtime.outbox
    await outbox.worker(poll_interval=0.01).run(until_empty=True)


async def test_outbox_job_commits_with_the_transaction_or_not_at_all(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    """Outbox: the text's job row is written in the flow's transaction, with the request
    id; its payload is what is sent; a rolled-back flow leaves no job and sends nothing."""
    svc = await texting(make_service, twilio, mailer_delivery="outbox", outbox_worker_enabled=False)
    kept, dropped = number(), number()
    assert (await post(svc, kept, "135790")).status_code == 200
    assert (await post(svc, dropped, rollback=True)).json() == {"rolled_back": True}
    (job,) = await _jobs(svc, kept)
    assert (job.type, job.state) == ("sms.otp", JobState.QUEUED)
    assert json.loads(job.payload) == {
        "sms": {"to": kept, "text": "Your code is 135790", "channel": "sms", "purpose": "otp"}
    }
    assert await _jobs(svc, dropped) == []
    await _drain(svc)
    assert twilio.texts_to(kept) == ["Your code is 135790"]
    assert twilio.texts_to(dropped) == []
    (job,) = await _jobs(svc, kept)
    assert (job.state, job.payload) == (JobState.SUCCEEDED, "{}")  # the code is erased


async def test_outbox_dead_letters_a_refused_text_with_twilios_message(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    """Outbox: a 4xx is final: dead-lettered after one attempt, with Twilio's message
    (the number masked in it)."""
    svc = await texting(make_service, twilio, mailer_delivery="outbox", outbox_worker_enabled=False)
    twilio.script(400)
    phone = number()
    assert (await post(svc, phone)).status_code == 200
    await _drain(svc)
    (job,) = await _jobs(svc, phone)
    assert (job.state, job.attempts) == (JobState.DEAD, 1)
    assert "is not a valid phone number" in (job.last_error or "")
    assert phone not in (job.last_error or "") and "123456" not in (job.last_error or "")


async def test_outbox_worker_in_process_sends_and_retries(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    svc = await texting(make_service, twilio, mailer_delivery="outbox")
    twilio.script("drop")
    phone = number()
    assert (await post(svc, phone)).status_code == 200
    await twilio.wait_delivered(1)
    assert twilio.texts_to(phone) == ["Your code is 123456"]
    assert [a.answer for a in twilio.attempts] == ["drop", "201"]


# -- which texter, and the settings ------------------------------------------------------


async def test_dev_mode_without_a_provider_sends_to_the_dev_inbox(
    make_service: Callable[..., Any],
) -> None:
    """Dev mode, no GOTRUE_SMS_PROVIDER: texts land in the dev inbox beside the mail,
    in its JSON API and on its page."""
    svc: Service = await make_service(dev=True, sms_provider="")
    add_text_route(svc)
    phone = number()
    assert (await post(svc, phone, "987654")).status_code == 200
    texts = (await svc.http.get("/_dev/inbox/texts", params={"to": f"+{phone}"})).json()
    assert [(t["to"], t["text"], t["channel"]) for t in texts] == [
        (f"+{phone}", "Your code is 987654", "sms")
    ]
    page = (await svc.http.get("/_dev/inbox")).text
    assert "Text messages (1)" in page and "Your code is 987654" in page
    assert (await svc.http.delete("/_dev/inbox/texts")).json() == {"deleted": 1}


async def test_outside_dev_mode_without_a_provider_the_texter_refuses(
    make_service: Callable[..., Any],
) -> None:
    svc: Service = await make_service()
    assert isinstance(svc.app.state.service.texter, UnconfiguredTexter)


async def test_a_provider_makes_the_sms_chain(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    svc: Service = await make_service(**twilio.settings())
    assert isinstance(svc.app.state.service.texter, SmsChain)


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"sms_provider": "vonage"}, "GOTRUE_SMS_PROVIDER: Value error, 'vonage' is a GoTrue"),
        ({"sms_provider": "carrier-pigeon"}, "GOTRUE_SMS_PROVIDER: Value error, unknown"),
        ({"sms_provider": "twilio"}, "GOTRUE_SMS_TWILIO_ACCOUNT_SID: required"),
        (
            {"sms_provider": "twilio", "sms_twilio_account_sid": "AC1"},
            "GOTRUE_SMS_TWILIO_AUTH_TOKEN: required",
        ),
        (
            {
                "sms_provider": "twilio",
                "sms_twilio_account_sid": "AC1",
                "sms_twilio_auth_token": "t",
            },
            "GOTRUE_SMS_TWILIO_MESSAGE_SERVICE_SID: required",
        ),
        (
            {
                "sms_provider": "twilio",
                "sms_twilio_account_sid": "AC/../x",
                "sms_twilio_auth_token": "t",
                "sms_twilio_message_service_sid": "MG1",
            },
            "GOTRUE_SMS_TWILIO_ACCOUNT_SID: expected letters and digits",
        ),
        ({"sms_template": "{{ .Code"}, "GOTRUE_SMS_TEMPLATE:"),
        ({"mfa_phone_template": "{{ end }}"}, "GOTRUE_MFA_PHONE_TEMPLATE:"),
        ({"sms_twilio_api_base_url": "ftp://x"}, "GOTRUE_SMS_TWILIO_API_BASE_URL:"),
        ({"internal_http_timeout": "0s"}, "GOTRUE_INTERNAL_HTTP_TIMEOUT:"),
    ],
)
def test_sms_settings_are_checked_at_start(settings: dict[str, Any], variable: str) -> None:
    with pytest.raises(ConfigError, match="^" + variable.replace("(", r"\(")):
        load_settings(env_file=None, **BASE, **settings)

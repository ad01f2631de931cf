"""POST /otp and /resend with a phone, GOTRUE_SMS_TEST_OTP, the code's limits
(length, expiry, tries) and the SMS allowance (issue 17; GoTrue's otp.go,
resend.go, phone.go, conf's GetTestOTP)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, update

from apitask_auth.config import ConfigError, load_settings
from apitask_auth.http.ratelimit import SMS_ALLOWANCE, take_sms_allowance
from apitask_auth.http.timing import NOTHING_SENT, SENT, ResponseTimeMiddleware
from apitask_auth.routes.phone import SIGNED_UP as PHONE_SIGNED_UP
from apitask_auth.storage.tables import email_rate_limits, now, users

from ._phones import PASSWORD, PhoneService, phone, phone_service
from .test_timing import FakeTime, _client

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error_code"], body["msg"]


def _answer(response: httpx.Response) -> tuple[int, bytes]:
    return response.status_code, response.content


@pytest.fixture
async def phones(make_service: Callable[..., Any]) -> PhoneService:
    return await phone_service(make_service)


async def _verify(phones: PhoneService, number: str, code: str) -> httpx.Response:
    return await phones.http.post("/verify", json={"type": "sms", "phone": number, "token": code})


async def test_otp_signs_a_new_number_up_and_a_known_one_in(phones: PhoneService) -> None:
    """A new number: an account (phone identity, no password) and a code; a confirmed
    one: a sign-in code. Both answer 200 {} (the same bytes), both codes sign in."""
    new = phone()
    first = await phones.http.post("/otp", json={"phone": "+" + new, "data": {"k": "v"}})
    assert _answer(first) == (200, b"{}")
    session = (await _verify(phones, new, phones.texter.code(new))).json()
    assert session["user"]["user_metadata"] == {"k": "v"}
    assert session["user"]["identities"][0]["provider"] == "phone"

    known, _ = await phones.signed_up()
    again = await phones.http.post("/otp", json={"phone": known, "channel": "whatsapp"})
    assert _answer(again) == _answer(first)
    text = phones.texter.to(known)[-1]
    assert text.channel == "whatsapp"
    signed_in = await _verify(phones, known, text.otp)
    assert signed_in.status_code == 200, signed_in.text
    # No password was set by /otp: the password grant cannot sign the new number in.
    refused = await phones.http.post(
        "/token?grant_type=password", json={"phone": new, "password": ""}
    )
    assert refused.status_code == 400


async def test_otp_refusals(make_service: Callable[..., Any]) -> None:
    """GoTrue's answers: create_user false with an unknown number (422 otp_disabled),
    an invalid number (400, before the look-up), a bad channel, signups off."""
    phones = await phone_service(make_service)
    stranger = phone()
    unknown = {"phone": stranger, "create_user": False}
    assert _error(await phones.http.post("/otp", json=unknown)) == (
        422,
        "otp_disabled",
        "Signups not allowed for otp",
    )
    invalid = await phones.http.post("/otp", json={"phone": "0123", "create_user": False})
    assert _error(invalid) == (
        400,
        "validation_failed",
        "Invalid phone number format (E.164 required)",
    )
    channel = await phones.http.post("/otp", json={"phone": phone(), "channel": "fax"})
    assert _error(channel)[:2] == (400, "validation_failed")
    known, _ = await phones.signed_up()
    allowed = await phones.http.post("/otp", json={"phone": known, "create_user": False})
    assert allowed.status_code == 200

    closed = await phone_service(make_service, disable_signup=True)
    assert _error(await closed.http.post("/otp", json={"phone": phone()})) == (
        422,
        "signup_disabled",
        "Signups not allowed for this instance",
    )
    assert phones.texter.to(stranger) == [] and closed.texter.texts == []


async def test_otp_under_sms_autoconfirm_confirms_then_texts_a_sign_in_code(
    make_service: Callable[..., Any],
) -> None:
    phones = await phone_service(make_service, sms_autoconfirm=True)
    number = phone()
    assert (await phones.http.post("/otp", json={"phone": number})).status_code == 200
    session = (await _verify(phones, number, phones.texter.code(number))).json()
    assert session["user"]["phone_confirmed_at"]


async def test_resend_sms_texts_unconfirmed_numbers_only(make_service: Callable[..., Any]) -> None:
    """Unknown, confirmed, and unconfirmed numbers all answer 200 {}; only the
    unconfirmed one gets a (new) code, which replaces the first."""
    phones = await phone_service(make_service)
    pending = phone()
    await phones.http.post("/signup", json={"phone": pending, "password": PASSWORD})
    first_code = phones.texter.code(pending)
    confirmed, _ = await phones.signed_up()
    before = len(phones.texter.texts)
    answers = [
        await phones.http.post("/resend", json={"type": "sms", "phone": number})
        for number in (phone(), confirmed)
    ]
    assert len(phones.texter.texts) == before
    resent = await phones.http.post("/resend", json={"type": "sms", "phone": pending})
    assert {_answer(answer) for answer in [*answers, resent]} == {(200, b"{}")}
    second_code = phones.texter.code(pending)
    assert len(phones.texter.to(pending)) == 2
    if second_code != first_code:
        stale = await _verify(phones, pending, first_code)
        assert _error(stale)[:2] == (403, "otp_expired")
    assert (await _verify(phones, pending, second_code)).status_code == 200


async def test_test_numbers_get_their_fixed_code_and_no_text(
    make_service: Callable[..., Any],
) -> None:
    """GOTRUE_SMS_TEST_OTP: no text, the fixed code verifies; after
    GOTRUE_SMS_TEST_OTP_VALID_UNTIL the number is texted a real code."""
    number = phone()
    phones = await phone_service(make_service, sms_test_otp=f"+{number}:424242")
    assert (await phones.http.post("/otp", json={"phone": number})).status_code == 200
    assert phones.texter.texts == []
    wrong = await _verify(phones, number, "000000")
    assert _error(wrong)[:2] == (403, "otp_expired")
    assert (await _verify(phones, number, "424242")).status_code == 200

    other = phone()
    past = (now() - timedelta(minutes=1)).isoformat()
    expired = await phone_service(
        make_service, sms_test_otp=f"{other}:424242", sms_test_otp_valid_until=past
    )
    assert (await expired.http.post("/otp", json={"phone": other})).status_code == 200
    [text] = expired.texter.to(other)
    assert _error(await _verify(expired, other, "424242"))[:2] == (403, "otp_expired")
    assert (await _verify(expired, other, text.otp)).status_code == 200


async def test_code_length_and_expiry(make_service: Callable[..., Any]) -> None:
    """GOTRUE_SMS_OTP_LENGTH (6..10, else 6) and GOTRUE_SMS_OTP_EXP (seconds)."""
    for length, expected in ((8, 8), (11, 6)):
        phones = await phone_service(make_service, sms_otp_length=length)
        number = phone()
        await phones.http.post("/otp", json={"phone": number})
        assert len(phones.texter.code(number)) == expected
    phones = await phone_service(make_service, sms_otp_exp=30)
    number = phone()
    await phones.http.post("/otp", json={"phone": number})
    async with phones.svc.app.state.service.engine.begin() as conn:
        await conn.execute(
            update(users)
            .where(users.c.phone == number)
            .values(confirmation_sent_at=now() - timedelta(seconds=31))
        )
    late = await _verify(phones, number, phones.texter.code(number))
    assert _error(late) == (403, "otp_expired", "Token has expired or is invalid")


async def test_a_texted_code_has_a_few_tries(make_service: Callable[..., Any]) -> None:
    """GOTRUE_SECURITY_MAX_VERIFY_ATTEMPTS (ours, issue 14): after the last wrong try
    the code is gone, the right one included; a new code starts afresh."""
    phones = await phone_service(make_service, security_max_verify_attempts=3)
    number = phone()
    await phones.http.post("/otp", json={"phone": number})
    code = phones.texter.code(number)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(3):
        assert _error(await _verify(phones, number, wrong))[:2] == (403, "otp_expired")
    assert _error(await _verify(phones, number, code))[:2] == (403, "otp_expired")
    async with phones.svc.app.state.service.engine.connect() as conn:
        token = await conn.scalar(select(users.c.confirmation_token).where(users.c.phone == number))
    assert token is None


async def test_unknown_and_known_numbers_answer_alike(phones: PhoneService) -> None:
    """No account enumeration: /resend and /verify answer an unknown number exactly as
    a known one (status and body); /signup of a confirmed number is a 200 user."""
    known, _ = await phones.signed_up()
    pending = phone()
    await phones.http.post("/signup", json={"phone": pending, "password": PASSWORD})
    unknown = phone()
    for body in (
        {"type": "sms", "token": "123456"},
        {"type": "phone_change", "token": "123456"},
    ):
        answers = {
            _answer(await phones.http.post("/verify", json=body | {"phone": number}))
            for number in (known, pending, unknown)
        }
        assert len(answers) == 1, answers
    resends = {
        _answer(await phones.http.post("/resend", json={"type": kind, "phone": number}))
        for kind in ("sms", "phone_change")
        for number in (known, unknown)
    }
    assert resends == {(200, b"{}")}
    signup = await phones.http.post("/signup", json={"phone": known, "password": PASSWORD})
    assert signup.status_code == 200 and set(signup.json()) >= {"id", "phone", "identities"}


async def test_the_sms_allowance_is_one_row_every_process_shares(
    make_service: Callable[..., Any],
) -> None:
    """GOTRUE_RATE_LIMIT_SMS_SENT: two services on one database draw from one
    allowance (429 over_sms_send_rate_limit "SMS rate limit exceeded"), apart
    from the e-mail one; known and unknown numbers spend alike; autoconfirm skips it."""
    one = await phone_service(make_service, rate_limit_sms_sent="3")
    two = await phone_service(make_service, rate_limit_sms_sent="3")
    assert (await one.http.post("/otp", json={"phone": phone()})).status_code == 200
    assert (
        await two.http.post("/resend", json={"type": "sms", "phone": phone()})
    ).status_code == 200
    assert (await one.http.post("/otp", json={"phone": phone()})).status_code == 200
    refused = await two.http.post("/otp", json={"phone": phone()})
    assert _error(refused) == (429, "over_sms_send_rate_limit", "SMS rate limit exceeded")
    async with one.svc.app.state.service.engine.connect() as conn:
        rows = {row.name: row.amount for row in await conn.execute(select(email_rate_limits))}
    assert rows == {SMS_ALLOWANCE.window_row: 3}
    mail = await one.http.post("/otp", json={"email": "someone@example.com"})
    assert mail.status_code == 200

    auto = await phone_service(make_service, rate_limit_sms_sent="0", sms_autoconfirm=True)
    assert (await auto.http.post("/otp", json={"phone": phone()})).status_code == 200
    off = await phone_service(make_service, rate_limit_sms_sent="0")
    assert _error(await off.http.post("/otp", json={"phone": phone()}))[0] == 429


async def test_the_sms_allowance_as_a_bucket(make_service: Callable[..., Any]) -> None:
    """N/duration: a bucket of N refilled one per duration (the e-mail syntax)."""
    phones = await phone_service(make_service, rate_limit_sms_sent="2/1h")
    settings = phones.svc.settings
    engine = phones.svc.app.state.service.engine
    at = 1_000_000.0
    async with engine.begin() as conn:
        await take_sms_allowance(conn, settings, at=at)
        await take_sms_allowance(conn, settings, at=at)
    async with engine.begin() as conn:
        with pytest.raises(Exception, match="SMS rate limit exceeded"):
            await take_sms_allowance(conn, settings, at=at + 60)
    async with engine.begin() as conn:
        await take_sms_allowance(conn, settings, at=at + 3600)


async def test_phone_answers_teach_and_wait_for_one_deadline(
    make_service: Callable[..., Any],
) -> None:
    """Response-time matching (timing.py) covers the phone flows as it covers mail:
    each answer that could have texted marks its outcome, known and unknown numbers
    alike, and is held to its path's deadline; GoTrue's own refusals teach nothing."""
    phones = await phone_service(make_service, security_match_response_times=False)
    known, _ = await phones.signed_up()
    pending = phone()
    await phones.http.post("/signup", json={"phone": pending, "password": PASSWORD})
    fake = FakeTime()
    middleware = ResponseTimeMiddleware(phones.svc.app, sleep_until=fake.sleep_until)
    async with _client(middleware) as http:
        for number in (phone(), known):
            body = {"phone": number, "password": PASSWORD}
            assert (await http.post("/signup", json=body)).status_code == 200
        for number in (known, phone()):
            assert (await http.post("/otp", json={"phone": number})).status_code == 200
        for number in (pending, phone()):
            answer = await http.post("/resend", json={"type": "sms", "phone": number})
            assert answer.status_code == 200
        for number in (known, phone()):
            body = {"type": "sms", "phone": number, "token": "000000"}
            assert (await http.post("/verify", json=body)).status_code == 403
        refused = await http.post("/otp", json={"phone": phone(), "create_user": False})
        assert refused.status_code == 422
    learned = {
        path: {outcome: len(w.recent) for outcome, w in outcomes.items()}
        for path, outcomes in middleware.deadlines.paths.items()
    }
    assert learned == {
        "/signup": {SENT: 1, NOTHING_SENT: 1},
        "/otp": {SENT: 1, PHONE_SIGNED_UP: 1},
        "/resend": {SENT: 1, NOTHING_SENT: 1},
        "/verify": {SENT: 1, NOTHING_SENT: 1},
    }
    assert len(fake.deadlines) == 8


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"sms_test_otp": "15550100"}, "GOTRUE_SMS_TEST_OTP"),
        ({"sms_test_otp": "015550100:123456"}, "GOTRUE_SMS_TEST_OTP"),
        ({"sms_test_otp": "15550100:12ab"}, "GOTRUE_SMS_TEST_OTP"),
        ({"sms_test_otp_valid_until": "tomorrow"}, "GOTRUE_SMS_TEST_OTP_VALID_UNTIL"),
        ({"sms_test_otp_valid_until": "2030-01-01T00:00:00"}, "GOTRUE_SMS_TEST_OTP_VALID_UNTIL"),
        ({"rate_limit_sms_sent": "ten"}, "GOTRUE_RATE_LIMIT_SMS_SENT"),
        ({"sms_max_frequency": "-1s"}, "GOTRUE_SMS_MAX_FREQUENCY"),
        ({"sms_otp_exp": -1}, "GOTRUE_SMS_OTP_EXP"),
    ],
)
def test_phone_settings_are_checked_at_start(overrides: dict[str, Any], variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        load_settings(
            env_file=None,
            site_url="http://localhost:3000",
            api_external_url="http://auth.test",
            jwt_secret="secret",
            **overrides,
        )

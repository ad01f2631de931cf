"""Phone sign-up, its code by text, POST /verify {type: "sms"}, the password grant
with a phone, and /settings (issue 17; GoTrue's signup.go, verify.go, token.go)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jwt
import pytest
from sqlalchemy import select

from apitask_auth.accounts.security import token_hash
from apitask_auth.storage.tables import audit_log_entries, identities, one_time_tokens, users

from ._phones import PASSWORD, PhoneService, phone, phone_service
from .conftest import SECRET

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx


E164 = (400, "validation_failed", "Invalid phone number format (E.164 required)")
CHANNEL = (400, "validation_failed", "Invalid channel, supported values are 'sms' or 'whatsapp'")
PKCE = (400, "validation_failed", "PKCE not supported for phone signups")
BOTH = (
    400,
    "validation_failed",
    "Only an email address or phone number should be provided on signup.",
)


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error_code"], body["msg"]


@pytest.fixture
async def phones(make_service: Callable[..., Any]) -> PhoneService:
    return await phone_service(make_service)


async def test_signup_texts_a_code_that_confirms_the_number_and_signs_in(
    phones: PhoneService,
) -> None:
    """The number is stored without + or spaces; the user has a phone identity and
    provider; the code is texted once (channel sms, purpose otp) and stored only
    hashed; verifying it confirms the number and answers a session (amr otp)."""
    number = phone()
    spaced = f"+{number[:4]} {number[4:]}"
    response = await phones.http.post(
        "/signup", json={"phone": spaced, "password": PASSWORD, "data": {"plan": "a"}}
    )
    assert response.status_code == 200, response.text
    user = response.json()
    assert (user["phone"], user["email"]) == (number, "")
    assert "phone_confirmed_at" not in user and "confirmation_sent_at" in user
    assert user["app_metadata"] == {"provider": "phone", "providers": ["phone"]}
    assert user["user_metadata"] == {"plan": "a"}
    [identity] = user["identities"]
    assert identity["provider"] == "phone" and identity["id"] == user["id"]
    assert identity["identity_data"] == {
        "sub": user["id"],
        "phone": number,
        "email_verified": False,
        "phone_verified": False,
        "plan": "a",
    }
    [text] = phones.texter.texts
    assert (text.phone, text.user_id, text.channel, text.purpose) == (
        number,
        user["id"],
        "sms",
        "otp",
    )
    assert len(text.otp) == 6 and text.otp.isdigit()

    engine = phones.svc.app.state.service.engine
    async with engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.id == user["id"]))).one()
        token = (
            await conn.execute(
                select(one_time_tokens).where(one_time_tokens.c.user_id == user["id"])
            )
        ).one()
    expected = token_hash(number, text.otp, SECRET)
    assert row.confirmation_token == expected != text.otp
    assert (token.token_type, token.token_hash, token.relates_to) == (
        "confirmation_token",
        expected,
        number,
    )

    verified = await phones.http.post(
        "/verify", json={"type": "sms", "phone": "+" + number, "token": text.otp}
    )
    assert verified.status_code == 200, verified.text
    session = verified.json()
    assert session["user"]["id"] == user["id"] and session["user"]["phone_confirmed_at"]
    assert session["user"]["confirmed_at"] == session["user"]["phone_confirmed_at"]
    claims = jwt.decode(session["access_token"], options={"verify_signature": False})
    assert claims["phone"] == number
    assert [claim["method"] for claim in claims["amr"]] == ["otp"]
    async with engine.connect() as conn:
        left = await conn.execute(
            select(one_time_tokens).where(one_time_tokens.c.user_id == user["id"])
        )
        assert left.all() == []
        actions = [
            entry.payload["action"]
            for entry in await conn.execute(select(audit_log_entries))
            if entry.payload["actor_id"] == user["id"]
        ]
    assert {"user_confirmation_requested", "user_signedup"} <= set(actions)

    again = await phones.http.post(
        "/verify", json={"type": "sms", "phone": number, "token": text.otp}
    )
    assert _error(again) == (403, "otp_expired", "Token has expired or is invalid")


async def test_password_grant_with_a_phone(phones: PhoneService) -> None:
    """Signs in a confirmed number (as typed or stored); an unconfirmed one is
    "Phone not confirmed"; a wrong password, an unknown or malformed number are
    "Invalid login credentials" alike."""
    number, _ = await phones.signed_up()
    for typed in (number, f"+{number}"):
        signed_in = await phones.http.post(
            "/token?grant_type=password", json={"phone": typed, "password": PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json()["user"]["phone"] == number
    unconfirmed = phone()
    await phones.http.post("/signup", json={"phone": unconfirmed, "password": PASSWORD})
    refused = await phones.http.post(
        "/token?grant_type=password", json={"phone": unconfirmed, "password": PASSWORD}
    )
    assert _error(refused) == (400, "phone_not_confirmed", "Phone not confirmed")
    invalid = (400, "invalid_credentials", "Invalid login credentials")
    for body in (
        {"phone": number, "password": "wrong-password"},
        {"phone": phone(), "password": PASSWORD},
        {"phone": "not a number", "password": PASSWORD},
    ):
        answer = await phones.http.post("/token?grant_type=password", json=body)
        assert _error(answer) == invalid, body


async def test_a_confirmed_number_signed_up_again_gets_a_made_up_user_and_no_text(
    make_service: Callable[..., Any],
) -> None:
    """GoTrue's sanitizeUser: a new id, no identities, the request's data, nothing
    sent; 422 user_already_exists under SMS autoconfirm."""
    phones = await phone_service(make_service)
    number, session = await phones.signed_up()
    sent = len(phones.texter.texts)
    response = await phones.http.post(
        "/signup", json={"phone": number, "password": "other-password", "data": {"x": 1}}
    )
    assert response.status_code == 200
    fake = response.json()
    assert fake["id"] != session["user"]["id"] and fake["identities"] == []
    assert (fake["phone"], fake["user_metadata"], fake["role"]) == (number, {"x": 1}, "")
    assert fake["app_metadata"] == {"provider": "phone", "providers": ["phone"]}
    assert "phone_confirmed_at" not in fake
    assert len(phones.texter.texts) == sent

    auto = await phone_service(make_service, sms_autoconfirm=True)
    number = phone()
    first = await auto.http.post("/signup", json={"phone": number, "password": PASSWORD})
    assert first.status_code == 200
    repeated = await auto.http.post("/signup", json={"phone": number, "password": PASSWORD})
    assert _error(repeated) == (422, "user_already_exists", "User already registered")


async def test_sms_autoconfirm_signs_up_with_a_session_and_no_text(
    make_service: Callable[..., Any],
) -> None:
    phones = await phone_service(make_service, sms_autoconfirm=True)
    number = phone()
    response = await phones.http.post("/signup", json={"phone": number, "password": PASSWORD})
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["user"]["phone"] == number and session["user"]["phone_confirmed_at"]
    claims = jwt.decode(session["access_token"], options={"verify_signature": False})
    assert [claim["method"] for claim in claims["amr"]] == ["password"]
    assert phones.texter.texts == []
    settings = (await phones.http.get("/settings")).json()
    assert settings["phone_autoconfirm"] is True and settings["external"]["phone"] is True


async def test_settings_advertise_phone_sign_in(make_service: Callable[..., Any]) -> None:
    off = (await (await make_service()).http.get("/settings")).json()
    assert off["external"]["phone"] is False and off["phone_autoconfirm"] is False
    on = (await (await phone_service(make_service)).http.get("/settings")).json()
    assert on["external"]["phone"] is True and on["phone_autoconfirm"] is False


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"phone": "+0123456"}, E164),
        ({"phone": "1"}, E164),
        ({"phone": "1234567890123456"}, E164),
        ({"phone": "1555-0100"}, E164),
        ({"phone": "15550100\n"}, E164),
        ({"phone": "15550100", "channel": "pigeon"}, CHANNEL),
        ({"phone": "15550100", "code_challenge": "x" * 43, "code_challenge_method": "s256"}, PKCE),
        ({"phone": "15550100", "email": "a@example.com"}, BOTH),
    ],
)  # fmt: skip
async def test_signup_refusals(
    phones: PhoneService, body: dict[str, Any], expected: tuple[int, str, str]
) -> None:
    response = await phones.http.post("/signup", json={"password": PASSWORD} | body)
    assert _error(response) == expected
    assert phones.texter.texts == []


async def test_phone_off_refuses_every_phone_flow(make_service: Callable[..., Any]) -> None:
    """GOTRUE_EXTERNAL_PHONE_ENABLED off (the default): GoTrue's messages, nothing sent."""
    phones = await phone_service(make_service, external_phone_enabled=False)
    number = phone()
    disabled = "phone_provider_disabled"
    for path, body, message in (
        ("/signup", {"phone": number, "password": PASSWORD}, "Phone signups are disabled"),
        ("/otp", {"phone": number}, "Unsupported phone provider"),
        ("/resend", {"type": "sms", "phone": number}, "Phone logins are disabled"),
        (
            "/token?grant_type=password",
            {"phone": number, "password": PASSWORD},
            "Phone logins are disabled",
        ),
    ):
        assert _error(await phones.http.post(path, json=body)) == (400, disabled, message), path
    assert phones.texter.texts == []


async def test_a_texter_failure_answers_sms_send_failed_and_stores_nothing(
    phones: PhoneService,
) -> None:
    """An inline send that fails: GoTrue's 422 sms_send_failed with the provider's
    reason; the sign-up rolls back (no user, no code), so a retry works."""
    number = phone()
    phones.texter.failure = RuntimeError("provider said no")
    response = await phones.http.post("/signup", json={"phone": number, "password": PASSWORD})
    assert _error(response) == (
        422,
        "sms_send_failed",
        "Error sending confirmation OTP to provider: provider said no",
    )
    async with phones.svc.app.state.service.engine.connect() as conn:
        found = await conn.execute(select(users.c.id).where(users.c.phone == number))
        assert found.all() == []
    phones.texter.failure = None
    retried = await phones.http.post("/signup", json={"phone": number, "password": PASSWORD})
    assert retried.status_code == 200 and len(phones.texter.to(number)) == 1


async def test_an_unconfirmed_number_signed_up_again_is_texted_after_the_interval(
    make_service: Callable[..., Any],
) -> None:
    """GOTRUE_SMS_MAX_FREQUENCY: within it, 429 over_sms_send_rate_limit and no text;
    the account keeps its first password (the request proves nothing yet)."""
    phones = await phone_service(make_service, sms_max_frequency="1h")
    number = phone()
    first = await phones.http.post("/signup", json={"phone": number, "password": PASSWORD})
    assert first.status_code == 200
    again = await phones.http.post("/signup", json={"phone": number, "password": "other-pass"})
    status, code, message = _error(again)
    assert (status, code) == (429, "over_sms_send_rate_limit")
    assert message.startswith("For security purposes, you can only request this after ")
    assert len(phones.texter.to(number)) == 1
    async with phones.svc.app.state.service.engine.connect() as conn:
        count = await conn.execute(
            select(identities.c.id).where(identities.c.provider_id == first.json()["id"])
        )
        assert len(count.all()) == 1

"""PUT /user {phone}: a code texted to the new number, POST /verify {type:
"phone_change"}, /resend {type: "phone_change"} (issue 17; GoTrue's user.go,
verify.go's smsVerify)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import update

from apitask_auth.accounts.phones import INVALID_CHANNEL
from apitask_auth.storage.tables import now, users

from ._accounts import PASSWORD as EMAIL_PASSWORD
from ._accounts import age_session, signed_in
from ._phones import PhoneService, phone, phone_service

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx


TAKEN = "Phone number already registered by another user"
E164 = "Invalid phone number format (E.164 required)"
E164_FULL = (400, "validation_failed", E164)
NOT_EMAIL = (400, "validation_failed", "Invalid email verification type")
NOT_SMS = (400, "validation_failed", "Invalid sms verification type")
EXPIRED = (403, "otp_expired", "Token has expired or is invalid")


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error_code"], body["msg"]


def _bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


@pytest.fixture
async def phones(make_service: Callable[..., Any]) -> PhoneService:
    return await phone_service(make_service)


async def test_a_phone_user_changes_number(phones: PhoneService) -> None:
    """The code goes to the new number; the user shows new_phone until it is verified;
    then phone is the new number, the phone identity follows, the old number is free."""
    old, session = await phones.signed_up()
    new = phone()
    response = await phones.http.put("/user", json={"phone": f"+{new}"}, headers=_bearer(session))
    assert response.status_code == 200, response.text
    user = response.json()
    assert (user["phone"], user["new_phone"]) == (old, new)
    assert "phone_change_sent_at" in user
    text = phones.texter.to(new)[-1]
    assert (text.user_id, text.purpose) == (user["id"], "otp")

    wrong_number = await phones.http.post(
        "/verify", json={"type": "phone_change", "phone": old, "token": text.otp}
    )
    assert _error(wrong_number)[:2] == (403, "otp_expired")
    verified = await phones.http.post(
        "/verify", json={"type": "phone_change", "phone": new, "token": text.otp}
    )
    assert verified.status_code == 200, verified.text
    changed = verified.json()["user"]
    assert changed["phone"] == new and "new_phone" not in changed
    [identity] = changed["identities"]
    assert identity["identity_data"]["phone"] == new
    signup_old = await phones.http.post("/signup", json={"phone": old, "password": "p4ssword!"})
    assert signup_old.json()["identities"] != []  # a real new account: the number is free


async def test_an_email_user_adds_a_phone_identity(make_service: Callable[..., Any]) -> None:
    phones = await phone_service(make_service)
    address, session = await signed_in(phones.svc)
    new = phone()
    response = await phones.http.put("/user", json={"phone": new}, headers=_bearer(session))
    assert response.status_code == 200
    verified = await phones.http.post(
        "/verify",
        json={"type": "phone_change", "phone": new, "token": phones.texter.code(new)},
    )
    user = verified.json()["user"]
    assert (user["email"], user["phone"]) == (address, new)
    assert sorted(identity["provider"] for identity in user["identities"]) == ["email", "phone"]
    assert user["app_metadata"]["providers"] == ["email", "phone"]
    by_phone = await phones.http.post(
        "/token?grant_type=password", json={"phone": new, "password": EMAIL_PASSWORD}
    )
    assert by_phone.status_code == 200


async def test_phone_change_refusals(phones: PhoneService) -> None:
    """A number another account has (422 phone_exists), an invalid number, a bad
    channel; the same number is no change (no text)."""
    taken, _ = await phones.signed_up()
    mine, session = await phones.signed_up()
    sent = len(phones.texter.texts)
    for body, expected in (
        ({"phone": taken}, (422, "phone_exists", TAKEN)),
        ({"phone": "+0555"}, (400, "validation_failed", E164)),
        ({"phone": phone(), "channel": "fax"}, (400, "validation_failed", INVALID_CHANNEL)),
    ):
        response = await phones.http.put("/user", json=body, headers=_bearer(session))
        assert _error(response) == expected
    same = await phones.http.put("/user", json={"phone": mine}, headers=_bearer(session))
    assert same.status_code == 200 and "new_phone" not in same.json()
    assert len(phones.texter.texts) == sent


async def test_resend_phone_change_texts_the_pending_number(phones: PhoneService) -> None:
    number, session = await phones.signed_up()
    new = phone()
    await phones.http.put("/user", json={"phone": new}, headers=_bearer(session))
    resent = await phones.http.post("/resend", json={"type": "phone_change", "phone": number})
    assert (resent.status_code, resent.json()) == (200, {})
    assert len(phones.texter.to(new)) == 2
    verified = await phones.http.post(
        "/verify",
        json={"type": "phone_change", "phone": new, "token": phones.texter.code(new)},
    )
    assert verified.status_code == 200


async def test_sms_autoconfirm_changes_the_number_at_once(
    make_service: Callable[..., Any],
) -> None:
    phones = await phone_service(make_service, sms_autoconfirm=True)
    number = phone()
    signup = await phones.http.post("/signup", json={"phone": number, "password": "p4ssword!"})
    session = signup.json()
    new = phone()
    response = await phones.http.put("/user", json={"phone": new}, headers=_bearer(session))
    assert response.status_code == 200
    assert response.json()["phone"] == new and phones.texter.texts == []


async def test_a_number_taken_before_the_change_is_confirmed(phones: PhoneService) -> None:
    """Someone else signs the number up and confirms it between the request and the
    code: the change is 422 phone_exists (the unique index decides), nothing changes."""
    mine, session = await phones.signed_up()
    wanted = phone()
    await phones.http.put("/user", json={"phone": wanted}, headers=_bearer(session))
    code = phones.texter.code(wanted)
    await phones.signed_up(wanted)
    late = await phones.http.post(
        "/verify", json={"type": "phone_change", "phone": wanted, "token": code}
    )
    assert _error(late) == (422, "phone_exists", TAKEN)
    me = await phones.http.get("/user", headers=_bearer(session))
    assert (me.json()["phone"], me.json()["new_phone"]) == (mine, wanted)


async def test_verify_refusals_of_phone_types(phones: PhoneService) -> None:
    """A banned user's right code (403 user_banned), a token hash with a phone type,
    a phone with an e-mail type, an address with a phone type."""
    number = phone()
    signup = await phones.http.post("/signup", json={"phone": number, "password": "p4ssword!"})
    user_id = signup.json()["id"]
    banned = await phones.http.put(
        f"/admin/users/{user_id}",
        json={"ban_duration": "1h"},
        headers=phones.svc.admin_headers(),
    )
    assert banned.status_code == 200, banned.text
    answer = await phones.http.post(
        "/verify", json={"type": "sms", "phone": number, "token": phones.texter.code(number)}
    )
    assert _error(answer) == (403, "user_banned", "User is banned")
    for body, expected in (
        ({"type": "sms", "token_hash": "0" * 56}, NOT_EMAIL),
        ({"type": "signup", "phone": number, "token": "123456"}, NOT_SMS),
        ({"type": "sms", "email": "a@example.com", "token": "123456"}, EXPIRED),
        ({"type": "sms", "phone": "12345678901234567", "token": "1"}, E164_FULL),
    ):  # fmt: skip
        assert _error(await phones.http.post("/verify", json=body)) == expected, body


async def test_a_phone_user_reauthenticates_by_text(make_service: Callable[..., Any]) -> None:
    """GET /reauthenticate for a user with no address texts the nonce (GoTrue's
    phoneReauthenticationOtp); PUT /user takes it for a password change."""
    phones = await phone_service(
        make_service, security_update_password_require_reauthentication=True
    )
    number, session = await phones.signed_up()
    await age_session(phones.svc, session, 25)
    sent = await phones.http.get("/reauthenticate", headers=_bearer(session))
    assert (sent.status_code, sent.json()) == (200, {})
    nonce = phones.texter.code(number)
    not_it = "000000" if nonce != "000000" else "111111"
    wrong = await phones.http.put(
        "/user", json={"password": "new-password-1", "nonce": not_it}, headers=_bearer(session)
    )
    assert _error(wrong)[:2] == (422, "reauthentication_not_valid")
    changed = await phones.http.put(
        "/user", json={"password": "new-password-1", "nonce": nonce}, headers=_bearer(session)
    )
    assert changed.status_code == 200, changed.text
    signed_in = await phones.http.post(
        "/token?grant_type=password", json={"phone": number, "password": "new-password-1"}
    )
    assert signed_in.status_code == 200


async def test_a_texted_nonce_lives_as_long_as_a_texted_code(
    make_service: Callable[..., Any],
) -> None:
    """GoTrue's verifyReauthentication: a nonce sent by text expires after
    GOTRUE_SMS_OTP_EXP, not the mailed codes' GOTRUE_MAILER_OTP_EXP (a day)."""
    phones = await phone_service(
        make_service, security_update_password_require_reauthentication=True, sms_otp_exp=30
    )
    number, session = await phones.signed_up()
    await age_session(phones.svc, session, 25)
    await phones.http.get("/reauthenticate", headers=_bearer(session))
    async with phones.svc.app.state.service.engine.begin() as conn:
        await conn.execute(
            update(users)
            .where(users.c.phone == number)
            .values(reauthentication_sent_at=now() - timedelta(seconds=31))
        )
    late = await phones.http.put(
        "/user",
        json={"password": "new-password-1", "nonce": phones.texter.code(number)},
        headers=_bearer(session),
    )
    assert _error(late) == (422, "reauthentication_not_valid", "Nonce has expired or is invalid")

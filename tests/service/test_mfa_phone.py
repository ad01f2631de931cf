"""MFA with phone factors (§3.18): the code goes out through the service's texter
(a recording one here), is stored hashed, and raises the session as TOTP does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from apitask_auth.storage.tables import mfa_challenges, mfa_factors

from ._accounts import bearer, signed_in
from ._mfa import claims, error, methods, verify
from ._texts import RecordingTexter

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service


async def _phone_service(make_service: Callable[..., Any], **overrides: Any) -> Service:
    service: Service = await make_service(
        texter=RecordingTexter(),
        mfa_phone_enroll_enabled=True,
        mfa_phone_verify_enabled=True,
        **overrides,
    )
    return service


def _texter(svc: Service) -> RecordingTexter:
    texter: RecordingTexter = svc.app.state.service.texter
    return texter


async def _enroll_phone(svc: Service, session: dict[str, Any], phone: str) -> dict[str, Any]:
    response = await svc.http.post(
        "/factors",
        json={"factor_type": "phone", "phone": phone, "friendly_name": phone},
        headers=bearer(session),
    )
    assert response.status_code == 200, response.text
    factor: dict[str, Any] = response.json()
    return factor


async def test_phone_factor_is_texted_its_code_and_raises_the_session(
    make_service: Callable[..., Any],
) -> None:
    """Enrol (the number stored in E.164 without "+"), challenge (a text with a code of
    GOTRUE_MFA_PHONE_OTP_LENGTH digits, purpose "mfa"; only its hash stored), verify:
    aal2 with ``mfa/phone`` in the amr."""
    svc = await _phone_service(make_service, mfa_phone_otp_length=8)
    _, session = await signed_in(svc)
    factor = await _enroll_phone(svc, session, "+1 415 555 2671")
    assert (factor["type"], factor["phone"], "totp" in factor) == (
        "phone",
        "+1 415 555 2671",
        False,
    )
    user = (await svc.http.get("/user", headers=bearer(session))).json()
    assert user["factors"][0]["phone"] == "14155552671"

    response = await svc.http.post(
        f"/factors/{factor['id']}/challenge", json={"channel": None}, headers=bearer(session)
    )
    assert response.status_code == 200, response.text
    challenge = response.json()
    assert challenge["type"] == "phone"
    [(phone, code, purpose, channel)] = _texter(svc).sent
    assert (phone, len(code), code.isdigit(), purpose, channel) == (
        "14155552671",
        8,
        True,
        "mfa",
        "sms",
    )
    async with svc.app.state.service.engine.connect() as conn:
        stored = (
            await conn.execute(
                select(mfa_challenges.c.otp_code).where(mfa_challenges.c.id == challenge["id"])
            )
        ).scalar_one()
    assert stored and code not in stored

    wrong = str((int(code) + 1) % 10**8).zfill(8)
    refused = await verify(svc, session, factor["id"], challenge["id"], wrong)
    assert error(refused) == (422, "mfa_verification_failed", "Invalid MFA Phone code entered")
    right = await verify(svc, session, factor["id"], challenge["id"], code)
    assert right.status_code == 200, right.text
    assert (claims(right.json())["aal"], methods(right.json())) == (
        "aal2",
        ["mfa/phone", "password"],
    )


async def test_phone_challenges_are_spaced_and_checked(make_service: Callable[..., Any]) -> None:
    """GOTRUE_MFA_PHONE_MAX_FREQUENCY between texts to one factor (429, nothing sent);
    an unknown channel is refused before anything is sent."""
    svc = await _phone_service(make_service)
    _, session = await signed_in(svc)
    factor = await _enroll_phone(svc, session, "+14155552671")
    path = f"/factors/{factor['id']}/challenge"
    bad_channel = await svc.http.post(path, json={"channel": "pigeon"}, headers=bearer(session))
    assert error(bad_channel) == (
        400,
        "validation_failed",
        "Invalid channel, supported values are 'sms' or 'whatsapp'",
    )
    assert (await svc.http.post(path, headers=bearer(session))).status_code == 200
    again = await svc.http.post(path, headers=bearer(session))
    status, code, message = error(again)
    assert (status, code) == (429, "over_sms_send_rate_limit")
    assert message.startswith("For security purposes, you can only request this after ")
    assert len(_texter(svc).sent) == 1


async def test_phone_enrolment_rules(make_service: Callable[..., Any]) -> None:
    """A number is required and must be E.164; enrolling a number again replaces the
    unverified factor, and is refused once that number's factor is verified; phone
    MFA is off by default."""
    svc = await _phone_service(make_service)
    _, session = await signed_in(svc)
    auth = bearer(session)
    for phone, message in (
        ("", "Phone number required to enroll Phone factor"),
        ("+0123", "Invalid phone number format (E.164 required)"),
        ("call me", "Invalid phone number format (E.164 required)"),
    ):
        response = await svc.http.post(
            "/factors", json={"factor_type": "phone", "phone": phone}, headers=auth
        )
        assert error(response) == (400, "validation_failed", message)
    first = await _enroll_phone(svc, session, "+14155552671")
    replaced = await svc.http.post(
        "/factors", json={"factor_type": "phone", "phone": "+14155552671"}, headers=auth
    )
    assert replaced.status_code == 200, replaced.text
    async with svc.app.state.service.engine.connect() as conn:
        ids = (await conn.execute(select(mfa_factors.c.id))).scalars().all()
    assert first["id"] not in ids and replaced.json()["id"] in ids

    factor_id = replaced.json()["id"]
    challenged = await svc.http.post(f"/factors/{factor_id}/challenge", headers=auth)
    code = _texter(svc).sent[-1][1]
    raised = (await verify(svc, session, factor_id, challenged.json()["id"], code)).json()
    again = await svc.http.post(
        "/factors",
        json={"factor_type": "phone", "phone": "+14155552671"},
        headers=bearer(raised),
    )
    assert error(again) == (
        422,
        "mfa_verified_factor_exists",
        "A verified phone factor already exists, unenroll the existing factor to continue",
    )

    off: Service = await make_service()
    _, plain = await signed_in(off)
    refused = await off.http.post(
        "/factors", json={"factor_type": "phone", "phone": "+14155552671"}, headers=bearer(plain)
    )
    assert error(refused) == (
        422,
        "mfa_phone_enroll_not_enabled",
        "MFA enroll is disabled for Phone",
    )


async def test_admin_changes_a_phone_factors_number(make_service: Callable[..., Any]) -> None:
    """PUT /admin/users/{id}/factors/{factor_id} with an E.164 ``phone``: stored without
    "+"; a bad number is 400."""
    svc = await _phone_service(make_service)
    _, session = await signed_in(svc)
    factor = await _enroll_phone(svc, session, "+14155552671")
    path = f"/admin/users/{claims(session)['sub']}/factors/{factor['id']}"
    admin = svc.admin_headers()
    bad = await svc.http.put(path, json={"phone": "+0123"}, headers=admin)
    assert error(bad) == (400, "validation_failed", "Invalid phone number format (E.164 required)")
    changed = await svc.http.put(path, json={"phone": "+442071838750"}, headers=admin)
    assert (changed.status_code, changed.json()["phone"]) == (200, "442071838750")

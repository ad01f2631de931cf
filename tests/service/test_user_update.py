"""PUT /user and GET /reauthenticate: data, password, e-mail change (§3.9, §3.10, §3.17)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import jwt
from sqlalchemy import update

from apitask_auth.accounts.email_change import SINGLE_CONFIRMATION
from apitask_auth.storage.tables import users

from ._accounts import (
    CHALLENGE,
    PASSWORD,
    VERIFIER,
    age_session,
    bearer,
    fragment,
    mails_to,
    query,
    signed_in,
)
from .conftest import NEW_FORMAT, SECRET, email

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

    from .conftest import Service

NEW_PASSWORD = "another-secret-password"


async def test_data_is_merged_and_null_deletes(svc: Service) -> None:
    """user_metadata is shallow-merged; a null value removes the key."""
    _, session = await signed_in(svc)
    first = await svc.http.put("/user", json={"data": {"a": 1, "b": 2}}, headers=bearer(session))
    assert first.status_code == 200
    second = await svc.http.put(
        "/user", json={"data": {"a": None, "c": 3}}, headers=bearer(session)
    )
    metadata = second.json()["user_metadata"]
    assert (metadata.get("a"), metadata["b"], metadata["c"]) == (None, 2, 3)


async def test_password_change_ends_other_sessions(svc: Service) -> None:
    """The new password works, the old one does not, other sessions end, this one stays."""
    address, session = await signed_in(svc)
    other = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    same = await svc.http.put("/user", json={"password": PASSWORD}, headers=bearer(session))
    assert (same.status_code, same.json()["error_code"]) == (422, "same_password")
    weak = await svc.http.put("/user", json={"password": "abc"}, headers=bearer(session))
    assert (weak.status_code, weak.json()["error_code"]) == (422, "weak_password")
    changed = await svc.http.put("/user", json={"password": NEW_PASSWORD}, headers=bearer(session))
    assert changed.status_code == 200
    assert (await svc.http.get("/user", headers=bearer(session))).status_code == 200
    ended = await svc.http.get("/user", headers=bearer(other.json()))
    assert (ended.status_code, ended.json()["error_code"]) == (403, "session_not_found")
    signed = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": NEW_PASSWORD}
    )
    assert signed.status_code == 200


async def test_reauthentication_nonce_for_an_old_session(make_service: Callable[..., Any]) -> None:
    """Past 24 h a password change needs the mailed nonce, which works once."""
    svc: Service = await make_service(security_update_password_require_reauthentication=True)
    address, session = await signed_in(svc)
    fresh = await svc.http.put("/user", json={"password": NEW_PASSWORD}, headers=bearer(session))
    assert fresh.status_code == 200  # a session under a day old needs no nonce
    await age_session(svc, session, 25)
    missing = await svc.http.put("/user", json={"password": PASSWORD}, headers=bearer(session))
    assert missing.status_code == 400
    assert missing.json()["error_code"] == "reauthentication_needed"
    assert missing.json()["msg"] == "Password update requires reauthentication"
    wrong = await svc.http.put(
        "/user", json={"password": PASSWORD, "nonce": "000000"}, headers=bearer(session)
    )
    assert (wrong.status_code, wrong.json()["error_code"]) == (422, "reauthentication_not_valid")
    asked = await svc.http.get("/reauthenticate", headers=bearer(session))
    assert (asked.status_code, asked.json()) == (200, {})
    mail = mails_to(svc, address)[-1]
    nonce = svc.otp(address)
    assert mail.subject == f"{nonce} is your verification code"
    accepted = await svc.http.put(
        "/user", json={"password": PASSWORD, "nonce": nonce}, headers=bearer(session)
    )
    assert accepted.status_code == 200, accepted.text
    assert "reauthentication_sent_at" not in accepted.json()
    reused = await svc.http.put(
        "/user", json={"password": NEW_PASSWORD, "nonce": nonce}, headers=bearer(session)
    )
    assert reused.status_code == 422


async def test_reauthenticate_rules(svc: Service) -> None:
    """Unconfirmed users are refused; a second request inside the interval is 429."""
    address = email()
    user = (await svc.http.post("/signup", json={"email": address, "password": PASSWORD})).json()
    token = jwt.encode({"sub": user["id"], "aud": "", "role": "authenticated"}, SECRET)
    refused = await svc.http.get(
        "/reauthenticate", headers={"Authorization": f"Bearer {token}", **NEW_FORMAT}
    )
    assert refused.status_code == 422
    assert refused.json() == {
        "code": "email_not_confirmed",
        "message": "Please verify your email first.",
    }
    _, session = await signed_in(svc)
    assert (await svc.http.get("/reauthenticate", headers=bearer(session))).status_code == 200
    again = await svc.http.get("/reauthenticate", headers=bearer(session))
    assert (again.status_code, again.json()["error_code"]) == (429, "over_email_send_rate_limit")


async def test_current_password_option(make_service: Callable[..., Any]) -> None:
    """With the option on, a password session must give the current password; recovery need not."""
    svc: Service = await make_service(security_update_password_require_current_password=True)
    address, session = await signed_in(svc)
    missing = await svc.http.put("/user", json={"password": NEW_PASSWORD}, headers=bearer(session))
    assert (missing.status_code, missing.json()["error_code"]) == (400, "current_password_required")
    wrong = await svc.http.put(
        "/user",
        json={"password": NEW_PASSWORD, "current_password": "not-it"},
        headers=bearer(session),
    )
    assert (wrong.status_code, wrong.json()["error_code"]) == (400, "current_password_invalid")
    right = await svc.http.put(
        "/user",
        json={"password": NEW_PASSWORD, "current_password": PASSWORD},
        headers=bearer(session),
    )
    assert right.status_code == 200
    await svc.http.post("/recover", json={"email": address})
    recovery = await svc.http.post(
        "/verify", json={"type": "recovery", "email": address, "token": svc.otp(address)}
    )
    reset = await svc.http.put(
        "/user", json={"password": PASSWORD}, headers=bearer(recovery.json())
    )
    assert reset.status_code == 200


async def test_secure_email_change_needs_both_confirmations(
    make_service: Callable[..., Any],
) -> None:
    """One code to each address; the first answers GoTrue's message, the second changes it."""
    svc: Service = await make_service(mailer_notifications_email_changed_enabled=True)
    old, session = await signed_in(svc)
    new = email()
    response = await svc.http.put("/user", json={"email": new.upper()}, headers=bearer(session))
    assert response.status_code == 200
    body = response.json()
    assert (body["email"], body["new_email"]) == (old, new)
    assert body["email_change_sent_at"]
    old_code, new_code = svc.otp(old), svc.otp(new)
    assert mails_to(svc, new)[-1].subject == "Confirm your new email address"
    assert query(svc.link(new))["type"] == ["email_change"]
    first = await svc.http.post(
        "/verify", json={"type": "email_change", "email": new, "token": new_code}
    )
    assert first.status_code == 200
    assert first.json() == {"msg": SINGLE_CONFIRMATION, "code": "200"}
    replay = await svc.http.post(
        "/verify", json={"type": "email_change", "email": new, "token": new_code}
    )
    assert replay.status_code == 403
    second = await svc.http.post(
        "/verify", json={"type": "email_change", "email": old, "token": old_code}
    )
    assert second.status_code == 200
    user = second.json()["user"]
    assert user["email"] == new
    assert "new_email" not in user
    assert user["identities"][0]["identity_data"]["email"] == new
    notice = mails_to(svc, old)[-1]
    assert notice.type == "email_changed_notification"
    signed = await svc.http.post(
        "/token?grant_type=password", json={"email": new, "password": PASSWORD}
    )
    assert signed.status_code == 200


async def test_secure_email_change_by_links(svc: Service) -> None:
    """Clicking the links: first a 303 with the message, then a 303 with the session."""
    old, session = await signed_in(svc)
    new = email()
    await svc.http.put("/user", json={"email": new}, headers=bearer(session))
    first = await svc.http.get(svc.link(old).replace("http://auth.test", ""))
    assert first.status_code == 303
    assert fragment(first.headers["location"]) == {"message": [SINGLE_CONFIRMATION], "sb": [""]}
    second = await svc.http.get(svc.link(new).replace("http://auth.test", ""))
    values = fragment(second.headers["location"])
    assert values["type"] == ["email_change"]
    me = await svc.http.get(
        "/user", headers={"Authorization": f"Bearer {values['access_token'][0]}"}
    )
    assert me.json()["email"] == new


async def test_single_confirmation_when_secure_change_is_off(
    make_service: Callable[..., Any],
) -> None:
    """Only the new address is mailed and its code alone completes the change."""
    svc: Service = await make_service(mailer_secure_email_change_enabled=False)
    old, session = await signed_in(svc)
    new = email()
    before = len(mails_to(svc, old))
    await svc.http.put("/user", json={"email": new}, headers=bearer(session))
    assert len(mails_to(svc, old)) == before
    verified = await svc.http.post(
        "/verify", json={"type": "email_change", "email": new, "token": svc.otp(new)}
    )
    assert verified.status_code == 200
    assert verified.json()["user"]["email"] == new


async def test_email_change_pkce(svc: Service) -> None:
    """With a challenge both links are pkce_; after both, the code is exchanged for a session."""
    old, session = await signed_in(svc)
    new = email()
    await svc.http.put(
        "/user",
        json={"email": new, "code_challenge": CHALLENGE, "code_challenge_method": "s256"},
        headers=bearer(session),
    )
    first = await svc.http.get(svc.link(new).replace("http://auth.test", ""))
    assert query(first.headers["location"])["message"] == [SINGLE_CONFIRMATION]
    second = await svc.http.get(svc.link(old).replace("http://auth.test", ""))
    code = query(second.headers["location"])["code"][0]
    exchanged = await svc.http.post(
        "/token?grant_type=pkce", json={"auth_code": code, "code_verifier": VERIFIER}
    )
    assert exchanged.json()["user"]["email"] == new


async def test_resend_email_change_mails_both_again(make_service: Callable[..., Any]) -> None:
    """/resend email_change regenerates both codes; the new ones complete the change."""
    svc: Service = await make_service(smtp_max_frequency="1us")
    old, session = await signed_in(svc)
    new = email()
    await svc.http.put("/user", json={"email": new}, headers=bearer(session))
    count = len(svc.sent)
    resent = await svc.http.post("/resend", json={"type": "email_change", "email": old})
    assert (resent.status_code, resent.json()) == (200, {})
    assert {mail.to for mail in svc.sent[count:]} == {old, new}
    for address in (old, new):
        response = await svc.http.post(
            "/verify", json={"type": "email_change", "email": address, "token": svc.otp(address)}
        )
        assert response.status_code == 200


async def test_email_change_refusals(svc: Service) -> None:
    """A taken address, app_metadata from a non-admin, a phone, a bad address."""
    taken, _ = await signed_in(svc)
    _, session = await signed_in(svc)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"email": taken}, 422, "email_exists"),
        ({"app_metadata": {"plan": "pro"}}, 403, "not_admin"),
        ({"phone": "+15555550100"}, 400, "phone_provider_disabled"),
        ({"email": "nope"}, 400, "validation_failed"),
        ({"email": email(), "code_challenge": "short"}, 400, "validation_failed"),
    ]
    for body, status, code in cases:
        response = await svc.http.put("/user", json=body, headers=bearer(session))
        assert (response.status_code, response.json()["error_code"]) == (status, code), body
    unauthenticated = await svc.http.put("/user", json={"data": {}})
    assert unauthenticated.status_code == 401


async def test_admin_group_may_set_app_metadata(svc: Service) -> None:
    """A user whose role is GOTRUE_JWT_ADMIN_GROUP_NAME may merge app_metadata."""
    address, session = await signed_in(svc)
    async with svc.app.state.service.engine.begin() as conn:
        await conn.execute(update(users).where(users.c.email == address).values(role="admin"))
    response = await svc.http.put(
        "/user", json={"app_metadata": {"plan": "pro"}}, headers=bearer(session)
    )
    assert response.status_code == 200
    assert response.json()["app_metadata"]["plan"] == "pro"


async def test_password_changed_notification(make_service: Callable[..., Any]) -> None:
    """With the flag on, a password change mails the user a notice."""
    svc: Service = await make_service(mailer_notifications_password_changed_enabled=True)
    address, session = await signed_in(svc)
    await svc.http.put("/user", json={"password": NEW_PASSWORD}, headers=bearer(session))
    notice = mails_to(svc, address)[-1]
    assert (notice.type, notice.subject) == (
        "password_changed_notification",
        "Your password was changed",
    )


async def test_notification_failure_is_logged_not_returned(
    make_service: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A refused notification (no e-mail allowance) leaves the change in place, logged."""
    svc: Service = await make_service(
        mailer_notifications_password_changed_enabled=True,
        mailer_autoconfirm=True,
        rate_limit_email_sent="0",
    )
    address = email()
    session = (await svc.http.post("/signup", json={"email": address, "password": PASSWORD})).json()
    with caplog.at_level(logging.WARNING, logger="apitask_auth"):
        response = await svc.http.put(
            "/user", json={"password": NEW_PASSWORD}, headers=bearer(session)
        )
    assert response.status_code == 200
    assert mails_to(svc, address) == []
    domain = address.rpartition("@")[2]
    assert f"unable to send password_changed_notification email to a recipient at {domain}" in (
        caplog.text
    )
    assert address not in caplog.text  # the domain only
    signed = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": NEW_PASSWORD}
    )
    assert signed.status_code == 200

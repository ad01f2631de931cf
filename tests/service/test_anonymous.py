"""Anonymous sign-ins (GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED), their per-IP limit, and
turning an anonymous user into a permanent one with PUT /user and the mailed code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jwt

from ._accounts import PASSWORD, bearer
from .conftest import SECRET, email

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service


def _claims(session: dict[str, Any]) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        session["access_token"], SECRET, algorithms=["HS256"], options={"verify_aud": False}
    )
    return claims


async def _anonymous(make_service: Callable[..., Any], **overrides: Any) -> Service:
    svc: Service = await make_service(external_anonymous_users_enabled=True, **overrides)
    return svc


async def _sign_in(svc: Service, **body: Any) -> dict[str, Any]:
    response = await svc.http.post("/signup", json=body)
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


async def test_off_by_default_refused_and_not_advertised(
    make_service: Callable[..., Any],
) -> None:
    """Off (the default), /settings says so and a sign-up without address or phone gets
    GoTrue's disabled error, before GOTRUE_DISABLE_SIGNUP is looked at (GoTrue's order)."""
    for overrides in ({}, {"disable_signup": True}):
        svc: Service = await make_service(**overrides)
        settings = (await svc.http.get("/settings")).json()
        assert settings["external"]["anonymous_users"] is False
        response = await svc.http.post("/signup", json={"data": {"a": 1}})
        assert (response.status_code, response.json()["error_code"], response.json()["msg"]) == (
            422,
            "anonymous_provider_disabled",
            "Anonymous sign-ins are disabled",
        )


async def test_sign_in_creates_an_anonymous_user_and_session(
    make_service: Callable[..., Any],
) -> None:
    """On: /settings advertises it; the sign-up returns a session for a user with no
    address, identity or providers, ``data`` as its metadata, and a token with
    ``is_anonymous`` true and the ``anonymous`` method, as GoTrue's."""
    svc = await _anonymous(make_service)
    settings = (await svc.http.get("/settings")).json()
    assert settings["external"]["anonymous_users"] is True
    # A password without an address is ignored: still an anonymous sign-up.
    session = await _sign_in(svc, data={"field": "foo"}, password=PASSWORD)
    user = session["user"]
    assert user["is_anonymous"] is True
    assert (user["email"], user["phone"], user["aud"], user["role"]) == (
        "",
        "",
        svc.settings.jwt_aud,
        "authenticated",
    )
    assert (user["app_metadata"], user["user_metadata"], user["identities"]) == (
        {},
        {"field": "foo"},
        [],
    )
    assert user["last_sign_in_at"] is not None
    claims = _claims(session)
    assert claims["is_anonymous"] is True
    assert [entry["method"] for entry in claims["amr"]] == ["anonymous"]
    assert (claims["sub"], claims["role"], claims["email"]) == (user["id"], "authenticated", "")

    current = await svc.http.get("/user", headers=bearer(session))
    assert (current.status_code, current.json()["is_anonymous"]) == (200, True)
    refreshed = await svc.http.post(
        "/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert _claims(refreshed.json())["is_anonymous"] is True
    other = await _sign_in(svc)
    assert other["user"]["id"] != user["id"]
    assert other["user"]["user_metadata"] == {}


async def test_signup_disabled_refuses_anonymous_sign_ins(
    make_service: Callable[..., Any],
) -> None:
    """GOTRUE_DISABLE_SIGNUP refuses anonymous sign-ups too; /settings still says they
    are on, and that sign-ups are off, as GoTrue's does."""
    svc = await _anonymous(make_service, disable_signup=True)
    settings = (await svc.http.get("/settings")).json()
    assert (settings["external"]["anonymous_users"], settings["disable_signup"]) == (True, True)
    response = await svc.http.post("/signup", json={})
    assert (response.status_code, response.json()["error_code"]) == (422, "signup_disabled")


async def test_per_ip_limit_of_anonymous_sign_ins(make_service: Callable[..., Any]) -> None:
    """GOTRUE_RATE_LIMIT_ANONYMOUS_USERS per hour per client, bursts of that many; a
    bucket of its own: other clients, and e-mail sign-ups, are not refused by it."""
    svc = await _anonymous(
        make_service, rate_limit_header="X-Real-IP", rate_limit_anonymous_users=2
    )
    first = {"X-Real-IP": "192.0.2.1"}
    for _ in range(2):
        assert (await svc.http.post("/signup", json={}, headers=first)).status_code == 200
    refused = await svc.http.post("/signup", json={"data": {}}, headers=first)
    assert (refused.status_code, refused.json()["error_code"], refused.json()["msg"]) == (
        429,
        "over_request_rate_limit",
        "Request rate limit reached",
    )
    other = await svc.http.post("/signup", json={}, headers={"X-Real-IP": "192.0.2.2"})
    assert other.status_code == 200
    by_mail = await svc.http.post(
        "/signup", json={"email": email(), "password": PASSWORD}, headers=first
    )
    assert by_mail.status_code == 200, by_mail.text


async def test_convert_with_an_address_and_a_password(make_service: Callable[..., Any]) -> None:
    """PUT /user with an address mails that address a code (only it: there is no current
    address) and keeps the user anonymous; the code confirms the address, the user is
    permanent (an e-mail identity and provider, a token saying so) and the password set
    with it signs in."""
    svc = await _anonymous(make_service)
    session = await _sign_in(svc)
    alone = await svc.http.put("/user", json={"password": PASSWORD}, headers=bearer(session))
    assert (alone.status_code, alone.json()["error_code"], alone.json()["msg"]) == (
        422,
        "validation_failed",
        "Updating password of an anonymous user without an email or phone is not allowed",
    )
    address = email()
    updated = await svc.http.put(
        "/user", json={"email": address, "password": PASSWORD}, headers=bearer(session)
    )
    assert updated.status_code == 200, updated.text
    assert (updated.json()["new_email"], updated.json()["is_anonymous"]) == (address, True)
    assert [mail.to for mail in svc.sent] == [address]
    not_yet = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert not_yet.status_code == 400

    verified = await svc.http.post(
        "/verify", json={"type": "email_change", "email": address, "token": svc.otp(address)}
    )
    assert verified.status_code == 200, verified.text
    user = verified.json()["user"]
    assert (user["id"], user["email"], user["is_anonymous"]) == (
        session["user"]["id"],
        address,
        False,
    )
    assert user["app_metadata"] == {"provider": "email", "providers": ["email"]}
    assert [identity["provider"] for identity in user["identities"]] == ["email"]
    assert user["email_confirmed_at"] is not None
    assert _claims(verified.json())["is_anonymous"] is False
    signed_in = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["is_anonymous"] is False


async def test_convert_under_autoconfirm_takes_the_address_at_once(
    make_service: Callable[..., Any],
) -> None:
    """With GOTRUE_MAILER_AUTOCONFIRM an anonymous user's new address is theirs at once,
    as a sign-up would be (GoTrue): no mail, no longer anonymous."""
    svc = await _anonymous(make_service, mailer_autoconfirm=True)
    session = await _sign_in(svc)
    address = email()
    updated = await svc.http.put("/user", json={"email": address}, headers=bearer(session))
    assert updated.status_code == 200, updated.text
    user = updated.json()
    assert (user["email"], user["is_anonymous"], user.get("new_email")) == (address, False, None)
    assert user["app_metadata"] == {"provider": "email", "providers": ["email"]}
    assert svc.sent == []

"""What verifying does with the account's state: a ban, an unconfirmed address, no password."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._accounts import PASSWORD, admin_created, bearer
from .conftest import email

if TYPE_CHECKING:
    from .conftest import Service


async def _link(svc: Service, kind: str, address: str) -> dict[str, Any]:
    response = await svc.http.post(
        "/admin/generate_link", json={"type": kind, "email": address}, headers=svc.admin_headers()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_banned_user_cannot_verify(svc: Service) -> None:
    """A valid recovery code of a banned user: GoTrue's 403 user_banned, no session;
    the ban lifted, the same code works."""
    headers = svc.admin_headers()
    address = email()
    created = await admin_created(svc, address)
    banned = await svc.http.put(
        f"/admin/users/{created['id']}", json={"ban_duration": "1h"}, headers=headers
    )
    assert banned.status_code == 200, banned.text
    link = await _link(svc, "recovery", address)
    body = {"type": "recovery", "token_hash": link["hashed_token"]}
    refused = await svc.http.post("/verify", json=body)
    assert (refused.status_code, refused.json()["error_code"]) == (403, "user_banned")
    assert "access_token" not in refused.json()
    lifted = await svc.http.put(
        f"/admin/users/{created['id']}", json={"ban_duration": "none"}, headers=headers
    )
    assert lifted.status_code == 200, lifted.text
    verified = await svc.http.post("/verify", json=body)
    assert verified.status_code == 200, verified.text
    assert verified.json()["user"]["email"] == address


async def test_recovery_of_an_unconfirmed_user_confirms_the_address(svc: Service) -> None:
    """The recovery code proves the address: the user is confirmed, as GoTrue's
    recoverVerify confirms an unconfirmed user."""
    address = email()
    signup = await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    assert signup.status_code == 200, signup.text
    link = await _link(svc, "recovery", address)
    verified = await svc.http.post(
        "/verify", json={"type": "recovery", "email": address, "token": link["email_otp"]}
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["user"]["email_confirmed_at"]
    sign_in = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert sign_in.status_code == 200, sign_in.text


async def test_an_invited_user_sets_a_first_password(svc: Service) -> None:
    """An invited user has no password: after accepting the invite, PUT /user sets one
    without current_password or same-password checks, and it signs in."""
    address = email()
    link = await _link(svc, "invite", address)
    accepted = await svc.http.post(
        "/verify", json={"type": "invite", "email": address, "token": link["email_otp"]}
    )
    assert accepted.status_code == 200, accepted.text
    refused = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert (refused.status_code, refused.json()["error_code"]) == (400, "invalid_credentials")
    updated = await svc.http.put(
        "/user", json={"password": PASSWORD}, headers=bearer(accepted.json())
    )
    assert updated.status_code == 200, updated.text
    sign_in = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert sign_in.status_code == 200, sign_in.text

"""Admin user edits and links beyond the basics: filter, ban, empty update, link edges."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from apitask_auth.accounts.security import token_hash
from apitask_auth.storage.tables import users

from ._accounts import PASSWORD, admin_created
from .conftest import email

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service


async def _row(svc: Service, user_id: str) -> dict[str, Any]:
    async with svc.app.state.service.engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.id == user_id))).one()
    return dict(row._mapping)


async def test_list_filter_keeps_the_addresses_that_contain_it(svc: Service) -> None:
    """?filter= keeps the users whose address contains it (GoTrue's ``email LIKE
    '%filter%'``), and X-Total-Count counts only them."""
    headers = svc.admin_headers()
    marker = email().split("@")[0]  # unique to this test
    wanted = [f"{marker}a@example.com", f"x{marker}b@example.com"]
    for address in [*wanted, email()]:
        created = await svc.http.post("/admin/users", json={"email": address}, headers=headers)
        assert created.status_code == 200, created.text
    listed = await svc.http.get(f"/admin/users?filter={marker}", headers=headers)
    assert listed.status_code == 200
    assert sorted(user["email"] for user in listed.json()["users"]) == sorted(wanted)
    assert listed.headers["x-total-count"] == "2"


async def test_created_with_a_ban_cannot_sign_in(svc: Service) -> None:
    """ban_duration on create sets banned_until that far ahead; the password grant
    then answers GoTrue's 400 user_banned."""
    address = email()
    created = await svc.http.post(
        "/admin/users",
        json={
            "email": address,
            "password": PASSWORD,
            "email_confirm": True,
            "ban_duration": "24h",
        },
        headers=svc.admin_headers(),
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["banned_until"]
    row = await _row(svc, body["id"])
    banned_for = row["banned_until"] - row["created_at"]
    assert 23 * 3600 < banned_for.total_seconds() <= 24 * 3600 + 60
    sign_in = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert (sign_in.status_code, sign_in.json()["error_code"]) == (400, "user_banned")


async def test_empty_update_changes_nothing(svc: Service) -> None:
    """PUT with an empty body answers the user as it was (GoTrue: 200, no change)."""
    headers = svc.admin_headers()
    created = (
        await svc.http.post(
            "/admin/users",
            json={"email": email(), "user_metadata": {"a": 1}},
            headers=headers,
        )
    ).json()
    before = await _row(svc, created["id"])
    updated = await svc.http.put(f"/admin/users/{created['id']}", json={}, headers=headers)
    assert updated.status_code == 200, updated.text
    assert updated.json()["email"] == created["email"]
    assert updated.json()["user_metadata"] == {"a": 1}
    after = await _row(svc, created["id"])
    assert after["updated_at"] == before["updated_at"]
    assert after["email_confirmed_at"] is None


async def test_update_to_the_same_address_confirms_without_an_identity_change(
    svc: Service,
) -> None:
    """PUT with the user's own address and email_confirm confirms it: not email_exists."""
    headers = svc.admin_headers()
    address = email()
    created = (await svc.http.post("/admin/users", json={"email": address}, headers=headers)).json()
    updated = await svc.http.put(
        f"/admin/users/{created['id']}",
        json={"email": address, "email_confirm": True},
        headers=headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["email"] == address
    assert updated.json()["email_confirmed_at"]


async def test_generate_link_signup_for_an_unconfirmed_user_keeps_metadata(
    svc: Service,
) -> None:
    """signup without data for an existing unconfirmed user: a new code, metadata as it was."""
    address = email()
    await svc.http.post("/signup", json={"email": address, "password": PASSWORD, "data": {"a": 1}})
    response = await svc.http.post(
        "/admin/generate_link",
        json={"type": "signup", "email": address},
        headers=svc.admin_headers(),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_metadata"] == {"a": 1}
    assert body["hashed_token"] == token_hash(address, body["email_otp"], svc.settings.jwt_secret)
    row = await _row(svc, body["id"])
    assert row["confirmation_token"] == body["hashed_token"]
    verified = await svc.http.post(
        "/verify", json={"type": "signup", "email": address, "token": body["email_otp"]}
    )
    assert verified.status_code == 200, verified.text


async def test_generate_link_email_change_with_secure_change_off(
    make_service: Callable[..., Any],
) -> None:
    """Secure change off: only the new address gets a token (no current-address token),
    and its code alone makes the change."""
    svc: Service = await make_service(mailer_secure_email_change_enabled=False)
    headers = svc.admin_headers()
    address, new_address = email(), email()
    created = await admin_created(svc, address)
    response = await svc.http.post(
        "/admin/generate_link",
        json={"type": "email_change_new", "email": address, "new_email": new_address},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["new_email"] == new_address
    row = await _row(svc, created["id"])
    assert row["email_change"] == new_address
    assert row["email_change_token_new"] == token_hash(
        new_address, body["email_otp"], svc.settings.jwt_secret
    )
    assert not row["email_change_token_current"]
    verified = await svc.http.post(
        "/verify",
        json={"type": "email_change", "email": new_address, "token": body["email_otp"]},
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["user"]["email"] == new_address


async def test_confirming_an_address_change_confirms_the_account(
    make_service: Callable[..., Any],
) -> None:
    """An unconfirmed user whose address change is confirmed is confirmed too (GoTrue's
    ConfirmEmailChange confirms a user that was not), and can then sign in."""
    svc: Service = await make_service(mailer_secure_email_change_enabled=False)
    headers = svc.admin_headers()
    new_address = email()
    created = (
        await svc.http.post(
            "/admin/users", json={"email": email(), "password": PASSWORD}, headers=headers
        )
    ).json()
    assert "email_confirmed_at" not in created  # GoTrue omits it while unconfirmed
    link = (
        await svc.http.post(
            "/admin/generate_link",
            json={"type": "email_change_new", "email": created["email"], "new_email": new_address},
            headers=headers,
        )
    ).json()
    verified = await svc.http.post(
        "/verify", json={"type": "email_change", "email": new_address, "token": link["email_otp"]}
    )
    assert verified.status_code == 200, verified.text
    row = await _row(svc, created["id"])
    assert (row["email"], row["email_change"]) == (new_address, None)
    assert row["email_confirmed_at"] is not None
    sign_in = await svc.http.post(
        "/token?grant_type=password", json={"email": new_address, "password": PASSWORD}
    )
    assert sign_in.status_code == 200, sign_in.text

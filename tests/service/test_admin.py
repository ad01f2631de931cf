"""Admin endpoints: invite, generate_link, users CRUD (§3.6, §3.7, §3.16)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from apitask_auth.accounts.security import token_hash

from .conftest import SECRET, email

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service

PASSWORD = "secret-password"


async def test_admin_requires_an_admin_role(svc: Service) -> None:
    """No token: 401; a non-admin role: 403 not_admin."""
    assert (await svc.http.get("/admin/users")).status_code == 401
    response = await svc.http.get("/admin/users", headers=svc.admin_headers("authenticated"))
    assert (response.status_code, response.json()["error_code"]) == (403, "not_admin")
    assert response.json()["msg"] == "User not allowed"


_ADMIN_ROUTES = [
    ("POST", "/invite"),
    ("POST", "/admin/generate_link"),
    ("GET", "/admin/users"),
    ("POST", "/admin/users"),
    ("GET", f"/admin/users/{uuid.uuid4()}"),
    ("PUT", f"/admin/users/{uuid.uuid4()}"),
    ("DELETE", f"/admin/users/{uuid.uuid4()}"),
    ("GET", f"/admin/users/{uuid.uuid4()}/factors"),
    ("PUT", f"/admin/users/{uuid.uuid4()}/factors/{uuid.uuid4()}"),
    ("DELETE", f"/admin/users/{uuid.uuid4()}/factors/{uuid.uuid4()}"),
    ("GET", "/admin/oauth/clients"),
    ("POST", "/admin/oauth/clients/some-client"),
]


async def test_every_admin_route_checks_the_role_before_the_body(svc: Service) -> None:
    """Each admin route answers 401 without a token and 403 not_admin for a non-admin
    role, before it looks at a body (here one of the wrong type)."""
    user = svc.admin_headers("authenticated")
    for method, path in _ADMIN_ROUTES:
        anonymous = await svc.http.request(method, path, json={"email": 1})
        assert (anonymous.status_code, anonymous.json()["error_code"]) == (
            401,
            "no_authorization",
        ), path
        refused = await svc.http.request(method, path, json={"email": 1}, headers=user)
        assert (refused.status_code, refused.json()["error_code"]) == (403, "not_admin"), path


async def test_invite_mails_a_link_and_sets_invited_at(svc: Service) -> None:
    """Invite creates the user, mails a type=invite link; confirmed users are email_exists."""
    address = email()
    response = await svc.http.post(
        "/invite", json={"email": address, "data": {"team": "a"}}, headers=svc.admin_headers()
    )
    body = response.json()
    assert body["invited_at"] and body["confirmation_sent_at"]
    assert body["user_metadata"] == {"team": "a"}
    link = svc.link(address)
    assert parse_qs(urlsplit(link).query)["type"] == ["invite"]
    # Invites have no per-user interval: a second invite sends again.
    again = await svc.http.post("/invite", json={"email": address}, headers=svc.admin_headers())
    assert again.status_code == 200
    accepted = await svc.http.get(svc.link(address))
    assert accepted.status_code == 303
    assert "type=invite" in accepted.headers["location"]
    exists = await svc.http.post("/invite", json={"email": address}, headers=svc.admin_headers())
    assert (exists.status_code, exists.json()["error_code"]) == (422, "email_exists")


async def test_generate_link_types(svc: Service) -> None:
    """Every link type answers the flat user plus link fields, and sends nothing."""
    address = email()
    headers = svc.admin_headers()
    signup = (
        await svc.http.post(
            "/admin/generate_link",
            json={"type": "signup", "email": address, "password": PASSWORD, "data": {"k": 1}},
            headers=headers,
        )
    ).json()
    assert signup["email"] == address
    assert signup["verification_type"] == "signup"
    assert signup["hashed_token"] == token_hash(address, signup["email_otp"], SECRET)
    assert signup["redirect_to"] == "http://localhost:3000"
    assert f"token={signup['hashed_token']}&type=signup" in signup["action_link"]
    for kind in ("magiclink", "recovery", "invite"):
        response = await svc.http.post(
            "/admin/generate_link", json={"type": kind, "email": address}, headers=headers
        )
        assert response.json()["verification_type"] == kind, response.json()
    new_address = email()
    change = (
        await svc.http.post(
            "/admin/generate_link",
            json={"type": "email_change_new", "email": address, "new_email": new_address},
            headers=headers,
        )
    ).json()
    assert change["new_email"] == new_address
    assert "type=email_change" in change["action_link"]
    assert token_hash(new_address, change["email_otp"], SECRET) in change["action_link"]
    current = (
        await svc.http.post(
            "/admin/generate_link",
            json={"type": "email_change_current", "email": address, "new_email": new_address},
            headers=headers,
        )
    ).json()
    assert current["hashed_token"] in current["action_link"]
    assert svc.sent == []


async def test_generate_link_magiclink_for_unknown_user_signs_up(svc: Service) -> None:
    """magiclink for a new address creates the user: verification_type becomes signup."""
    response = await svc.http.post(
        "/admin/generate_link",
        json={"type": "magiclink", "email": email()},
        headers=svc.admin_headers(),
    )
    assert response.json()["verification_type"] == "signup"


async def test_generate_link_errors(make_service: Callable[..., Any]) -> None:
    """Unknown type, unknown user, confirmed user, taken new address, secure change off."""
    svc: Service = await make_service(mailer_secure_email_change_enabled=False)
    headers = svc.admin_headers()
    taken = email()
    await svc.http.post(
        "/admin/users", json={"email": taken, "email_confirm": True}, headers=headers
    )
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"type": "bogus", "email": email()}, 400, "validation_failed"),
        ({"type": "recovery", "email": email()}, 404, "user_not_found"),
        (
            {"type": "email_change_new", "email": email(), "new_email": email()},
            404,
            "user_not_found",
        ),
        ({"type": "signup", "email": taken, "password": PASSWORD}, 422, "email_exists"),
        ({"type": "invite", "email": taken}, 422, "email_exists"),
        ({"type": "signup", "email": email()}, 400, "validation_failed"),
        ({"type": "signup", "email": email(), "password": "short"}, 422, "weak_password"),
        ({"type": "email_change_new", "email": taken, "new_email": taken}, 422, "email_exists"),
        (
            {"type": "email_change_current", "email": taken, "new_email": email()},
            400,
            "validation_failed",
        ),
    ]
    for body, status, code in cases:
        response = await svc.http.post("/admin/generate_link", json=body, headers=headers)
        assert (response.status_code, response.json()["error_code"]) == (status, code), body


async def test_generate_link_unconfirmed_signup_merges_data(svc: Service) -> None:
    """signup for an existing unconfirmed user merges data into user_metadata."""
    address = email()
    headers = svc.admin_headers()
    await svc.http.post("/signup", json={"email": address, "password": PASSWORD, "data": {"a": 1}})
    body = (
        await svc.http.post(
            "/admin/generate_link",
            json={"type": "signup", "email": address, "data": {"b": 2}},
            headers=headers,
        )
    ).json()
    assert body["user_metadata"] == {"a": 1, "b": 2}


async def test_users_crud_and_pagination(svc: Service) -> None:
    """Create, list (with X-Total-Count and Link), get, update, delete."""
    headers = svc.admin_headers()
    ids = []
    for _ in range(3):
        created = await svc.http.post(
            "/admin/users", json={"email": email(), "password": PASSWORD}, headers=headers
        )
        assert created.status_code == 200
        ids.append(created.json()["id"])
    page = await svc.http.get("/admin/users?page=1&per_page=2", headers=headers)
    assert len(page.json()["users"]) == 2
    assert page.json()["aud"] == ""
    total = int(page.headers["x-total-count"])
    assert total >= 3
    assert 'rel="next"' in page.headers["link"]
    assert 'rel="last"' in page.headers["link"]
    empty = await svc.http.get("/admin/users?page=&per_page=", headers=headers)
    assert empty.status_code == 200
    for bad in ("page=x", "per_page=0"):
        response = await svc.http.get(f"/admin/users?{bad}", headers=headers)
        assert response.json()["msg"].startswith("Bad Pagination Parameters")
    user_id = ids[0]
    got = (await svc.http.get(f"/admin/users/{user_id}", headers=headers)).json()
    assert got["id"] == user_id
    new_address = email()
    updated = (
        await svc.http.put(
            f"/admin/users/{user_id}",
            json={
                "email": new_address,
                "email_confirm": True,
                "password": "another-password",
                "role": "editor",
                "app_metadata": {"plan": "pro"},
                "user_metadata": {"x": 1},
            },
            headers=headers,
        )
    ).json()
    assert updated["email"] == new_address
    assert updated["email_confirmed_at"]
    assert updated["role"] == "editor"
    assert updated["app_metadata"]["plan"] == "pro"
    assert updated["identities"][0]["identity_data"]["email"] == new_address
    sign_in = await svc.http.post(
        "/token?grant_type=password", json={"email": new_address, "password": "another-password"}
    )
    assert sign_in.status_code == 200
    assert (await svc.http.delete(f"/admin/users/{user_id}", headers=headers)).json() == {}
    missing = await svc.http.get(f"/admin/users/{user_id}", headers=headers)
    assert (missing.status_code, missing.json()["error_code"]) == (404, "user_not_found")
    soft = await svc.http.request(
        "DELETE", f"/admin/users/{ids[1]}", json={"should_soft_delete": True}, headers=headers
    )
    assert soft.status_code == 200
    soft_deleted = (await svc.http.get(f"/admin/users/{ids[1]}", headers=headers)).json()
    assert soft_deleted["deleted_at"]
    assert soft_deleted["email"] == ""


async def test_user_id_must_be_a_uuid(svc: Service) -> None:
    """A non-UUID id is GoTrue's 404 validation_failed."""
    response = await svc.http.get("/admin/users/nope", headers=svc.admin_headers())
    assert (response.status_code, response.json()["msg"]) == (404, "user_id must be an UUID")


async def test_create_user_errors(svc: Service) -> None:
    """Each invalid create is GoTrue's status and code."""
    headers = svc.admin_headers()
    taken = email()
    await svc.http.post("/admin/users", json={"email": taken}, headers=headers)
    fixed = str(uuid.uuid4())
    first = await svc.http.post(
        "/admin/users", json={"email": email(), "id": fixed}, headers=headers
    )
    assert first.json()["id"] == fixed
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({}, 400, "validation_failed"),
        ({"phone": "+0123"}, 400, "validation_failed"),
        ({"email": taken}, 422, "email_exists"),
        ({"email": email(), "id": "not-a-uuid"}, 400, "validation_failed"),
        ({"email": email(), "id": str(uuid.UUID(int=0))}, 400, "validation_failed"),
        ({"email": email(), "id": fixed}, 422, "user_already_exists"),
        ({"email": email(), "password": "a", "password_hash": "$2a$x"}, 400, "validation_failed"),
        ({"email": email(), "password_hash": "plain"}, 400, "validation_failed"),
        ({"email": email(), "ban_duration": "forever"}, 400, "validation_failed"),
        ({"email": email(), "email_confirm": "yes"}, 400, "bad_json"),
    ]
    for body, status, code in cases:
        response = await svc.http.post("/admin/users", json=body, headers=headers)
        assert (response.status_code, response.json()["error_code"]) == (status, code), body


async def test_update_user_to_a_taken_email_is_refused(svc: Service) -> None:
    """PUT with another user's address is email_exists; a missing user is user_not_found."""
    headers = svc.admin_headers()
    taken = email()
    await svc.http.post("/admin/users", json={"email": taken}, headers=headers)
    other = (await svc.http.post("/admin/users", json={"email": email()}, headers=headers)).json()
    response = await svc.http.put(
        f"/admin/users/{other['id']}", json={"email": taken}, headers=headers
    )
    assert response.json()["error_code"] == "email_exists"
    missing = await svc.http.put(f"/admin/users/{uuid.uuid4()}", json={}, headers=headers)
    assert missing.json()["error_code"] == "user_not_found"
    hashed = await svc.http.put(
        f"/admin/users/{other['id']}",
        json={"password_hash": "$2a$10$abcdefghijklmnopqrstuu", "aud": "", "ban_duration": "none"},
        headers=headers,
    )
    assert hashed.status_code == 200


async def test_new_users_get_the_default_group_unless_an_admin_names_a_role(
    make_service: Callable[..., Any],
) -> None:
    """Sign-up, invite, a signup link and admin creation all give a new user
    GOTRUE_JWT_DEFAULT_GROUP_NAME; only admin creation may name another role."""
    svc: Service = await make_service(jwt_default_group_name="member")
    admin = svc.admin_headers()
    made = [
        await svc.http.post("/signup", json={"email": email(), "password": PASSWORD}),
        await svc.http.post("/invite", json={"email": email()}, headers=admin),
        await svc.http.post(
            "/admin/generate_link",
            json={"type": "signup", "email": email(), "password": PASSWORD},
            headers=admin,
        ),
        await svc.http.post("/admin/users", json={"email": email()}, headers=admin),
    ]
    assert [response.status_code for response in made] == [200] * 4
    assert [response.json()["role"] for response in made] == ["member"] * 4
    named = await svc.http.post(
        "/admin/users", json={"email": email(), "role": "editor"}, headers=admin
    )
    assert named.json()["role"] == "editor"

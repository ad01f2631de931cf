"""POST /token, GET /user, POST /logout (§3.11-§3.13) and request authentication (§1.3)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from sqlalchemy import select

from apitask_auth.storage.tables import audit_log_entries

from .conftest import NEW_FORMAT, SECRET, email

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service

PASSWORD = "secret-password"
FOREIGN = "a-different-secret-of-32-bytes-or-more"


async def _signed_in(svc: Service) -> tuple[str, dict[str, Any]]:
    address = email()
    await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    await svc.http.post(
        "/verify", json={"type": "signup", "email": address, "token": svc.otp(address)}
    )
    response = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert response.status_code == 200
    return address, response.json()


def _bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


async def test_password_grant_issues_gotrue_claims(svc: Service) -> None:
    """The access token is HS256 with §7's claims; headers name the user."""
    address, session = await _signed_in(svc)
    claims = jwt.decode(
        session["access_token"], SECRET, algorithms=["HS256"], options={"verify_aud": False}
    )
    assert list(claims) == [
        "sub",
        "aud",
        "exp",
        "iat",
        "email",
        "phone",
        "app_metadata",
        "user_metadata",
        "role",
        "aal",
        "amr",
        "session_id",
        "is_anonymous",
    ]
    assert claims["email"] == address
    assert claims["role"] == "authenticated"
    assert claims["amr"][0]["method"] == "password"
    assert claims["exp"] - claims["iat"] == 3600
    assert session["expires_in"] == 3600
    assert len(session["refresh_token"]) == 12
    assert session["user"]["last_sign_in_at"]


async def test_issuer_claim_when_configured(make_service: Callable[..., Any]) -> None:
    """GOTRUE_JWT_ISSUER adds iss; GOTRUE_JWT_KEY_ID adds kid."""
    svc: Service = await make_service(jwt_issuer="https://issuer.test", jwt_key_id="k1")
    _, session = await _signed_in(svc)
    assert jwt.get_unverified_header(session["access_token"])["kid"] == "k1"
    assert (
        jwt.decode(
            session["access_token"], SECRET, algorithms=["HS256"], options={"verify_aud": False}
        )["iss"]
        == "https://issuer.test"
    )


async def test_password_grant_errors(svc: Service) -> None:
    """Wrong password and unknown user are the same 400; unconfirmed is email_not_confirmed."""
    address, _ = await _signed_in(svc)
    unconfirmed = email()
    await svc.http.post("/signup", json={"email": unconfirmed, "password": PASSWORD})
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"email": address, "password": "wrong-one"}, 400, "invalid_credentials"),
        ({"email": email(), "password": PASSWORD}, 400, "invalid_credentials"),
        ({"email": unconfirmed, "password": PASSWORD}, 400, "email_not_confirmed"),
        ({"password": PASSWORD}, 400, "validation_failed"),
        ({"email": address, "phone": "+1555", "password": PASSWORD}, 400, "validation_failed"),
        ({"phone": "+1555", "password": PASSWORD}, 400, "phone_provider_disabled"),
    ]
    for body, status, code in cases:
        response = await svc.http.post("/token?grant_type=password", json=body)
        assert (response.status_code, response.json()["error_code"]) == (status, code), body
    unsupported = await svc.http.post("/token?grant_type=magic", json={})
    assert unsupported.json()["msg"] == "unsupported_grant_type"


async def test_refresh_rotates_and_detects_reuse(svc: Service) -> None:
    """Rotation; a lost response is answered again; real reuse ends the session."""
    _, session = await _signed_in(svc)
    first = session["refresh_token"]
    second = (
        await svc.http.post("/token?grant_type=refresh_token", json={"refresh_token": first})
    ).json()
    assert second["refresh_token"] != first
    # The client lost that answer and retries with the old token: it gets the same child.
    retry = (
        await svc.http.post("/token?grant_type=refresh_token", json={"refresh_token": first})
    ).json()
    assert retry["refresh_token"] == second["refresh_token"]
    third = (
        await svc.http.post(
            "/token?grant_type=refresh_token", json={"refresh_token": second["refresh_token"]}
        )
    ).json()
    assert third["refresh_token"] not in {first, second["refresh_token"]}
    # Now `first` is two generations old: someone else has it. The session ends.
    reused = await svc.http.post("/token?grant_type=refresh_token", json={"refresh_token": first})
    assert (reused.status_code, reused.json()["error_code"]) == (400, "refresh_token_already_used")
    gone = await svc.http.post(
        "/token?grant_type=refresh_token", json={"refresh_token": third["refresh_token"]}
    )
    assert gone.json()["error_code"] == "refresh_token_not_found"
    user = await svc.http.get("/user", headers=_bearer(third))
    assert user.json()["error_code"] == "session_not_found"


async def test_unknown_refresh_token(svc: Service) -> None:
    """A well-formed token we never issued is refresh_token_not_found (malformed ones:
    test_refresh.py)."""
    unknown = await svc.http.post(
        "/token?grant_type=refresh_token", json={"refresh_token": "abcdefghijkl"}
    )
    assert unknown.json()["error_code"] == "refresh_token_not_found"


async def test_get_user_and_authentication_errors(svc: Service) -> None:
    """GET /user with a valid token; each bad token is GoTrue's error, in order."""
    address, session = await _signed_in(svc)
    me = await svc.http.get("/user", headers=_bearer(session))
    assert me.json()["email"] == address

    def token(claims: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}

    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 401, "no_authorization"),
        ({"Authorization": "Basic abc"}, 401, "no_authorization"),
        ({"Authorization": "Bearer not-a-jwt"}, 403, "bad_jwt"),
        (
            {"Authorization": f"Bearer {jwt.encode({'sub': 'x'}, FOREIGN, algorithm='HS256')}"},
            403,
            "bad_jwt",
        ),
        (token({"role": "authenticated"}), 403, "bad_jwt"),
        (token({"sub": "not-a-uuid"}), 400, "bad_jwt"),
        (token({"sub": str(uuid.uuid4())}), 403, "user_not_found"),
        (
            token({"sub": session["user"]["id"], "session_id": str(uuid.uuid4())}),
            403,
            "session_not_found",
        ),
        (_bearer(session) | {"X-JWT-AUD": "other"}, 400, "validation_failed"),
    ]
    for headers, status, code in cases:
        response = await svc.http.get("/user", headers=headers)
        assert (response.status_code, response.json()["error_code"]) == (status, code), headers


@pytest.mark.parametrize(("scope", "alive"), [("global", []), ("local", [1]), ("others", [0])])
async def test_logout_scopes(svc: Service, scope: str, alive: list[int]) -> None:
    """global ends every session, local this one, others all but this one."""
    address, first = await _signed_in(svc)
    second = (
        await svc.http.post(
            "/token?grant_type=password", json={"email": address, "password": PASSWORD}
        )
    ).json()
    response = await svc.http.post(f"/logout?scope={scope}", headers=_bearer(first))
    assert response.status_code == 204
    assert response.content == b""
    for index, session in enumerate([first, second]):
        status = (await svc.http.get("/user", headers=_bearer(session))).status_code
        assert (status == 200) == (index in alive)


async def test_logout_rejects_unknown_scope(svc: Service) -> None:
    """An unknown scope is a 400 naming it."""
    _, session = await _signed_in(svc)
    response = await svc.http.post("/logout?scope=everyone", headers=_bearer(session) | NEW_FORMAT)
    assert response.json() == {
        "code": "validation_failed",
        "message": 'Unsupported logout scope "everyone"',
    }


async def test_banned_user_cannot_sign_in(svc: Service) -> None:
    """An admin ban stops password sign-in, refresh and user requests."""
    address, session = await _signed_in(svc)
    ban = await svc.http.put(
        f"/admin/users/{session['user']['id']}",
        json={"ban_duration": "1h"},
        headers=svc.admin_headers(),
    )
    assert ban.json()["banned_until"]
    sign_in = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert sign_in.json()["error_code"] == "user_banned"
    refresh = await svc.http.post(
        "/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}
    )
    assert refresh.json()["error_code"] == "user_banned"
    assert (await svc.http.get("/user", headers=_bearer(session))).json()[
        "error_code"
    ] == "user_banned"
    await svc.http.put(
        f"/admin/users/{session['user']['id']}",
        json={"ban_duration": "none"},
        headers=svc.admin_headers(),
    )
    assert (await svc.http.get("/user", headers=_bearer(session))).status_code == 200


async def test_audit_log_records_the_flow(svc: Service) -> None:
    """Sign-up, confirmation, login, refresh and logout each leave a GoTrue audit entry."""
    _, session = await _signed_in(svc)
    await svc.http.post(
        "/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}
    )
    await svc.http.post("/logout", headers=_bearer(session))
    async with svc.app.state.service.engine.connect() as conn:
        rows = (await conn.execute(select(audit_log_entries.c.payload))).scalars().all()
    actions = [
        payload["action"] for payload in rows if payload["actor_id"] == session["user"]["id"]
    ]
    assert sorted(actions) == sorted(
        ["user_confirmation_requested", "user_signedup", "login", "token_refreshed", "logout"]
    )

"""POST /signup and GET/POST /verify, as GoTrue answers them (§3.1, §3.8)."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import update

from apitask_auth.accounts.security import token_hash
from apitask_auth.storage.tables import now, users

from .conftest import NEW_FORMAT, SECRET, email

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service

PASSWORD = "secret-password"
VERIFIER = "v" * 50
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)


async def test_signup_stores_keyed_hashes_and_mails_the_code(svc: Service) -> None:
    """The mailed link carries HMAC-SHA-224(email + otp) under the JWT secret (GoTrue:
    unkeyed); the user JSON carries no secrets."""
    address = email()
    response = await svc.http.post(
        "/signup", json={"email": address.upper(), "password": PASSWORD, "data": {"n": 1}}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["email"] == address
    assert body["user_metadata"] == {"n": 1}
    assert body["identities"][0]["identity_data"]["email_verified"] is False
    assert "confirmation_sent_at" in body
    assert "email_confirmed_at" not in body
    assert "encrypted_password" not in body and "confirmation_token" not in body
    otp = svc.otp(address)
    assert len(otp) == 6 and otp.isdigit()
    link = svc.link(address)
    query = parse_qs(urlsplit(link).query)
    assert query["token"] == [token_hash(address, otp, SECRET)]
    assert query["type"] == ["signup"]
    assert link.startswith("http://auth.test/verify?")


async def test_signup_validation_errors(svc: Service) -> None:
    """Each invalid request answers GoTrue's status and code."""
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"email": email()}, 400, "validation_failed"),
        ({"email": email(), "password": "x" * 73}, 400, "validation_failed"),
        ({"email": email(), "password": "short"}, 422, "weak_password"),
        ({"email": "not an address", "password": PASSWORD}, 400, "validation_failed"),
        (
            {"email": email(), "phone": "+15555550100", "password": PASSWORD},
            400,
            "validation_failed",
        ),
        (
            {"email": email(), "password": PASSWORD, "code_challenge": CHALLENGE},
            400,
            "validation_failed",
        ),
        (
            {
                "email": email(),
                "password": PASSWORD,
                "code_challenge": "short",
                "code_challenge_method": "s256",
            },
            400,
            "validation_failed",
        ),
        (
            {
                "email": email(),
                "password": PASSWORD,
                "code_challenge": CHALLENGE,
                "code_challenge_method": "md5",
            },
            400,
            "validation_failed",
        ),
        ({"password": PASSWORD}, 422, "anonymous_provider_disabled"),
        ({"phone": "+15555550100", "password": PASSWORD}, 400, "phone_provider_disabled"),
    ]
    for body, status, code in cases:
        response = await svc.http.post("/signup", json=body)
        assert (response.status_code, response.json()["error_code"]) == (status, code), body
        assert response.headers["x-sb-error-code"] == code


async def test_weak_password_carries_reasons_in_both_formats(
    make_service: Callable[..., Any],
) -> None:
    """422 weak_password with weak_password.reasons, legacy and 2024-01-01."""
    svc: Service = await make_service(
        password_min_length=10, password_required_characters="0123456789"
    )
    legacy = await svc.http.post("/signup", json={"email": email(), "password": "abcdefg"})
    assert legacy.status_code == 422
    assert legacy.json()["code"] == 422
    assert legacy.json()["weak_password"] == {"reasons": ["length", "characters"]}
    new = await svc.http.post(
        "/signup", json={"email": email(), "password": "abcdefg"}, headers=NEW_FORMAT
    )
    assert new.json()["code"] == "weak_password"
    assert new.json()["weak_password"] == {"reasons": ["length", "characters"]}
    assert new.headers["x-supabase-api-version"] == "2024-01-01"


async def test_signup_disabled_and_email_disabled(make_service: Callable[..., Any]) -> None:
    """GOTRUE_DISABLE_SIGNUP and GOTRUE_EXTERNAL_EMAIL_ENABLED=false refuse sign-ups."""
    disabled: Service = await make_service(disable_signup=True)
    response = await disabled.http.post("/signup", json={"email": email(), "password": PASSWORD})
    assert (response.status_code, response.json()["error_code"]) == (422, "signup_disabled")
    no_email: Service = await make_service(external_email_enabled=False)
    response = await no_email.http.post("/signup", json={"email": email(), "password": PASSWORD})
    assert (response.status_code, response.json()["error_code"]) == (400, "email_provider_disabled")


async def test_resignup_unconfirmed_resends_within_interval_rules(svc: Service) -> None:
    """An unconfirmed re-sign-up is the same user; inside the interval it is a 429."""
    address = email()
    first = (await svc.http.post("/signup", json={"email": address, "password": PASSWORD})).json()
    again = await svc.http.post("/signup", json={"email": address, "password": "other-password"})
    assert again.status_code == 429
    assert again.json()["error_code"] == "over_email_send_rate_limit"
    assert "For security purposes, you can only request this after" in again.json()["msg"]
    assert len([m for m in svc.sent if m.to == address]) == 1
    assert first["id"]


async def test_resignup_after_interval_resends(make_service: Callable[..., Any]) -> None:
    """With the interval passed, the confirmation is sent again to the same user."""
    svc: Service = await make_service(smtp_max_frequency="1us")
    address = email()
    first = (await svc.http.post("/signup", json={"email": address, "password": PASSWORD})).json()
    second = (await svc.http.post("/signup", json={"email": address, "password": PASSWORD})).json()
    assert first["id"] == second["id"]
    assert len([m for m in svc.sent if m.to == address]) == 2


async def test_signup_for_confirmed_user_returns_fake_user(svc: Service) -> None:
    """A confirmed address gets a fake user with a new id and no identities, and no mail."""
    address = email()
    await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    verified = await svc.http.post(
        "/verify", json={"type": "signup", "email": address, "token": svc.otp(address)}
    )
    assert verified.status_code == 200
    real_id = verified.json()["user"]["id"]
    sent = len(svc.sent)
    fake = await svc.http.post(
        "/signup", json={"email": address, "password": PASSWORD, "data": {"x": 1}}
    )
    assert fake.status_code == 200
    body = fake.json()
    assert body["id"] != real_id
    assert body["identities"] == []
    assert body["role"] == ""
    assert body["user_metadata"] == {"x": 1}
    assert "email_confirmed_at" not in body
    assert len(svc.sent) == sent


async def test_autoconfirm_signup_returns_session(make_service: Callable[..., Any]) -> None:
    """Autoconfirm: a session at once, user_already_exists on a repeat."""
    svc: Service = await make_service(mailer_autoconfirm=True)
    address = email()
    response = await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["user"]["user_metadata"] == {"email_verified": True}
    assert svc.sent == []
    again = await svc.http.post(
        "/signup", json={"email": address, "password": PASSWORD}, headers=NEW_FORMAT
    )
    assert again.status_code == 422
    assert again.json() == {"code": "user_already_exists", "message": "User already registered"}


async def test_get_verify_redirects_with_session_fragment(svc: Service) -> None:
    """GET /verify: 303 to redirect_to with the session in a sorted fragment."""
    address = email()
    await svc.http.post(
        "/signup?redirect_to=http://localhost:3000/welcome",
        json={"email": address, "password": PASSWORD},
    )
    link = svc.link(address)
    assert link.endswith("redirect_to=http://localhost:3000/welcome")
    response = await svc.http.get(link)
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/welcome"
    fragment = parse_qs(location.fragment, keep_blank_values=True)
    assert sorted(fragment) == [
        "access_token",
        "expires_at",
        "expires_in",
        "refresh_token",
        "sb",
        "token_type",
        "type",
    ]
    assert fragment["type"] == ["signup"]
    again = await svc.http.get(link)
    error = parse_qs(urlsplit(again.headers["location"]).fragment, keep_blank_values=True)
    assert error["error"] == ["access_denied"]
    assert error["error_code"] == ["otp_expired"]
    assert error["error_description"] == ["Email link is invalid or has expired"]


async def test_get_verify_rejects_unlisted_redirects(svc: Service) -> None:
    """An unlisted redirect_to falls back to SITE_URL."""
    address = email()
    await svc.http.post(
        "/signup?redirect_to=https://evil.example/", json={"email": address, "password": PASSWORD}
    )
    response = await svc.http.get(svc.link(address))
    assert response.headers["location"].startswith("http://localhost:3000#access_token=")


async def test_get_verify_requires_type_and_token(svc: Service) -> None:
    """Missing type or token are plain JSON 400s, not redirects."""
    no_type = await svc.http.get("/verify?token=abc")
    assert no_type.json()["msg"] == "Verify requires a verification type"
    no_token = await svc.http.get("/verify?type=signup")
    assert no_token.json()["msg"] == "Verify requires a token or a token hash"
    bad_type = await svc.http.get("/verify?type=bogus&token=x")
    assert bad_type.status_code == 400


async def test_pkce_signup_link_redirects_with_code_then_token_exchange(svc: Service) -> None:
    """A pkce_ token redirects with ?code=; the code and verifier give a session once."""
    address = email()
    await svc.http.post(
        "/signup",
        json={
            "email": address,
            "password": PASSWORD,
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
        },
    )
    link = svc.link(address)
    assert "token=pkce_" in link
    response = await svc.http.get(link)
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    wrong = await svc.http.post(
        "/token?grant_type=pkce", json={"auth_code": code, "code_verifier": "w" * 50}
    )
    assert wrong.json()["error_code"] == "bad_code_verifier"
    missing = await svc.http.post("/token?grant_type=pkce", json={"auth_code": code})
    assert missing.json()["error_code"] == "validation_failed"
    session = await svc.http.post(
        "/token?grant_type=pkce", json={"auth_code": code, "code_verifier": VERIFIER}
    )
    assert session.status_code == 200
    assert session.json()["user"]["email"] == address
    reused = await svc.http.post(
        "/token?grant_type=pkce", json={"auth_code": code, "code_verifier": VERIFIER}
    )
    assert (reused.status_code, reused.json()["error_code"]) == (404, "flow_state_not_found")


async def test_post_verify_token_hash_and_errors(svc: Service) -> None:
    """POST /verify: token_hash works; GoTrue's parameter errors in order."""
    address = email()
    await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    hashed = token_hash(address, svc.otp(address), SECRET)
    errors: list[tuple[dict[str, Any], int, str]] = [
        ({"type": "signup"}, 400, "Verify requires either a token or a token hash"),
        (
            {"type": "signup", "token": "1", "token_hash": hashed},
            400,
            "Verify requires either a token or a token hash",
        ),
        (
            {"type": "signup", "token_hash": hashed, "email": address},
            400,
            "Only the token_hash and type should be provided",
        ),
        (
            {"type": "signup", "token": "123456"},
            400,
            "Only an email address or phone number should be provided on verify",
        ),
        ({"type": "signup", "token": "123456", "email": "bad"}, 422, "Invalid email format"),
        (
            {"type": "signup", "token": "000000", "email": email()},
            403,
            "Token has expired or is invalid",
        ),
        ({"token_hash": hashed}, 400, "Verify requires a verification type"),
        # GoTrue's verifyTokenHash: a hash only opens the e-mail types.
        ({"type": "sms", "token_hash": hashed}, 400, "Invalid email verification type"),
        (
            {"type": "signup", "token": "1", "phone": "+1555"},
            400,
            "Invalid sms verification type",
        ),
    ]
    for body, status, message in errors:
        response = await svc.http.post("/verify", json=body)
        assert (response.status_code, response.json()["msg"]) == (status, message), body
    wrong = await svc.http.post(
        "/verify", json={"type": "signup", "email": address, "token": "000000"}
    )
    assert wrong.json()["error_code"] == "otp_expired"
    ok = await svc.http.post("/verify", json={"type": "email", "token_hash": hashed})
    assert ok.status_code == 200
    assert ok.json()["user"]["email_confirmed_at"]


async def test_expired_otp_is_refused(make_service: Callable[..., Any]) -> None:
    """An OTP older than GOTRUE_MAILER_OTP_EXP is otp_expired."""
    svc: Service = await make_service(mailer_otp_exp=0, smtp_max_frequency="1us")
    svc.settings.mailer_otp_exp = 1
    address = email()
    await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    async with svc.app.state.service.engine.begin() as conn:
        await conn.execute(update(users).values(confirmation_sent_at=now() - timedelta(seconds=5)))
    response = await svc.http.post(
        "/verify", json={"type": "signup", "email": address, "token": svc.otp(address)}
    )
    assert (response.status_code, response.json()["error_code"]) == (403, "otp_expired")

"""POST /recover, /magiclink, /otp and /resend, as GoTrue answers them (§3.2-§3.5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from apitask_auth.accounts.security import token_hash

from ._accounts import CHALLENGE, PASSWORD, VERIFIER, bearer, fragment, mails_to, query, signed_in
from .conftest import NEW_FORMAT, SECRET, email

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service


async def test_recover_mails_a_code_that_signs_in_and_allows_a_new_password(
    svc: Service,
) -> None:
    """Recovery: {} and a mail whose code verifies to a session that may set a password."""
    address, _ = await signed_in(svc)
    response = await svc.http.post("/recover", json={"email": address.upper()})
    assert (response.status_code, response.json()) == (200, {})
    mail = mails_to(svc, address)[-1]
    assert mail.subject == "Reset your password"
    otp = svc.otp(address)
    link = svc.link(address)
    assert query(link)["type"] == ["recovery"]
    assert query(link)["token"] == [token_hash(address, otp, SECRET)]
    verified = await svc.http.post(
        "/verify", json={"type": "recovery", "email": address, "token": otp}
    )
    assert verified.status_code == 200
    session = verified.json()
    changed = await svc.http.put(
        "/user", json={"password": "a-brand-new-password"}, headers=bearer(session)
    )
    assert changed.status_code == 200
    old = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert old.status_code == 400
    new = await svc.http.post(
        "/token?grant_type=password",
        json={"email": address, "password": "a-brand-new-password"},
    )
    assert new.status_code == 200


async def test_recover_link_redirects_with_a_recovery_session(svc: Service) -> None:
    """GET /verify with the mailed recovery link: 303 with the session, type=recovery."""
    address, _ = await signed_in(svc)
    await svc.http.post("/recover", json={"email": address})
    response = await svc.http.get(svc.link(address).replace("http://auth.test", ""))
    assert response.status_code == 303
    values = fragment(response.headers["location"])
    assert values["type"] == ["recovery"]
    assert values["access_token"][0]


async def test_recover_unknown_address_answers_like_a_known_one(svc: Service) -> None:
    """An unknown address gets the same 200 {} and no mail is sent."""
    unknown = email()
    sent = len(svc.sent)
    response = await svc.http.post("/recover", json={"email": unknown})
    assert (response.status_code, response.json()) == (200, {})
    again = await svc.http.post("/recover", json={"email": unknown})
    assert (again.status_code, again.json()) == (200, {})
    assert len(svc.sent) == sent


async def test_recover_errors_in_both_formats(make_service: Callable[..., Any]) -> None:
    """Empty address, a bad address, an incomplete PKCE pair, e-mail logins off."""
    svc: Service = await make_service()
    legacy = await svc.http.post("/recover", json={})
    assert legacy.status_code == 400
    assert legacy.json() == {
        "code": 400,
        "error_code": "validation_failed",
        "msg": "Password recovery requires an email",
    }
    new = await svc.http.post("/recover", json={"email": ""}, headers=NEW_FORMAT)
    assert new.json() == {
        "code": "validation_failed",
        "message": "Password recovery requires an email",
    }
    bad = await svc.http.post("/recover", json={"email": "no at sign"})
    assert (bad.status_code, bad.json()["error_code"]) == (400, "validation_failed")
    half = await svc.http.post("/recover", json={"email": email(), "code_challenge": CHALLENGE})
    assert (half.status_code, half.json()["error_code"]) == (400, "validation_failed")
    off: Service = await make_service(external_email_enabled=False)
    refused = await off.http.post("/recover", json={"email": email()})
    assert (refused.status_code, refused.json()["error_code"]) == (400, "email_provider_disabled")
    assert refused.json()["msg"] == "Email logins are disabled"


async def test_recover_interval_leaks_only_for_existing_users(svc: Service) -> None:
    """A second recovery inside the interval is 429 for a user; an unknown address stays 200."""
    address, _ = await signed_in(svc)
    assert (await svc.http.post("/recover", json={"email": address})).status_code == 200
    again = await svc.http.post("/recover", json={"email": address})
    assert again.status_code == 429
    assert again.json()["error_code"] == "over_email_send_rate_limit"
    assert again.json()["msg"].startswith("For security purposes, you can only request this after")
    assert len(mails_to(svc, address)) == 2  # the sign-up confirmation and one recovery


async def test_recover_pkce_link_gives_a_code_for_the_token_endpoint(svc: Service) -> None:
    """With a challenge the token is pkce_-prefixed; the link answers ?code= to exchange."""
    address, _ = await signed_in(svc)
    await svc.http.post(
        "/recover",
        json={"email": address, "code_challenge": CHALLENGE, "code_challenge_method": "S256"},
    )
    link = svc.link(address)
    assert query(link)["token"][0].startswith("pkce_")
    response = await svc.http.get(link.replace("http://auth.test", ""))
    assert response.status_code == 303
    code = query(response.headers["location"])["code"][0]
    exchanged = await svc.http.post(
        "/token?grant_type=pkce", json={"auth_code": code, "code_verifier": VERIFIER}
    )
    assert exchanged.status_code == 200
    assert exchanged.json()["user"]["email"] == address


async def test_otp_for_a_new_address_signs_up_with_a_confirmation_mail(svc: Service) -> None:
    """/otp for an unknown address creates the user and mails a sign-up confirmation."""
    address = email()
    response = await svc.http.post("/otp", json={"email": address, "data": {"plan": "free"}})
    assert (response.status_code, response.json()) == (200, {})
    mail = mails_to(svc, address)[-1]
    assert mail.subject == "Confirm your email address"
    assert query(svc.link(address))["type"] == ["signup"]
    verified = await svc.http.post(
        "/verify", json={"type": "email", "email": address, "token": svc.otp(address)}
    )
    assert verified.status_code == 200
    user = verified.json()["user"]
    assert user["user_metadata"]["plan"] == "free"
    assert user["email_confirmed_at"]


async def test_otp_and_magiclink_sign_ups_store_no_password(svc: Service) -> None:
    """No bcrypt for a password nobody knows: none is stored, and none signs in.

    GoTrue stores a bcrypt of a random password here; its cost is what made a
    known address's magic link wait as long as a sign-up (docs/security.md).
    """
    for path in ("/otp", "/magiclink"):
        address = email()
        response = await svc.http.post(path, json={"email": address})
        assert (response.status_code, response.json()) == (200, {})
        async with svc.app.state.service.engine.connect() as conn:
            stored = await conn.execute(
                text("SELECT encrypted_password FROM users WHERE email = :e"), {"e": address}
            )
            assert stored.scalar_one() is None
        await svc.http.post(
            "/verify", json={"type": "email", "email": address, "token": svc.otp(address)}
        )
        for password in ("", "None", PASSWORD):
            login = await svc.http.post(
                "/token?grant_type=password", json={"email": address, "password": password}
            )
            assert login.status_code == 400
            assert login.json()["error_code"] == "invalid_credentials"


async def test_otp_for_a_confirmed_user_mails_a_magic_link_on_the_recovery_path(
    make_service: Callable[..., Any],
) -> None:
    """A known address gets the magic link (recovery URL path) and its code signs in."""
    svc: Service = await make_service(mailer_urlpaths_recovery="/auth/v1/verify")
    address, _ = await signed_in(svc)
    response = await svc.http.post("/otp", json={"email": address})
    assert (response.status_code, response.json()) == (200, {})
    assert mails_to(svc, address)[-1].subject == "Your sign-in link"
    link = svc.link(address)
    assert link.startswith("http://auth.test/auth/v1/verify?")
    assert query(link)["type"] == ["magiclink"]
    verified = await svc.http.post(
        "/verify", json={"type": "magiclink", "email": address, "token": svc.otp(address)}
    )
    assert verified.status_code == 200
    assert verified.json()["user"]["email"] == address


async def test_otp_create_user_false_is_otp_disabled_for_unknown_addresses(
    svc: Service,
) -> None:
    """GoTrue's known leak: 422 otp_disabled for an unknown (or malformed) address."""
    for address in (email(), "not-an-address"):
        response = await svc.http.post("/otp", json={"email": address, "create_user": False})
        assert response.status_code == 422
        assert response.json()["error_code"] == "otp_disabled"
        assert response.json()["msg"] == "Signups not allowed for otp"
    known, _ = await signed_in(svc)
    ok = await svc.http.post("/otp", json={"email": known, "create_user": False})
    assert ok.status_code == 200


async def test_otp_validation(svc: Service) -> None:
    """Both addresses, a channel with e-mail, nothing at all, a phone."""
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"email": email(), "phone": "+15555550100"}, 400, "validation_failed"),
        ({"email": email(), "channel": "sms"}, 400, "validation_failed"),
        ({}, 400, "validation_failed"),
        ({"phone": "+15555550100"}, 400, "phone_provider_disabled"),
        ({"email": email(), "create_user": "yes"}, 400, "bad_json"),
    ]
    for body, status, code in cases:
        response = await svc.http.post("/otp", json=body)
        assert (response.status_code, response.json()["error_code"]) == (status, code), body


async def test_magic_link_and_recovery_share_the_interval(svc: Service) -> None:
    """A magic link right after a recovery mail is refused with the interval's 429."""
    address, _ = await signed_in(svc)
    assert (await svc.http.post("/recover", json={"email": address})).status_code == 200
    response = await svc.http.post("/magiclink", json={"email": address})
    assert response.status_code == 429
    assert response.json()["error_code"] == "over_email_send_rate_limit"


async def test_magiclink_errors(make_service: Callable[..., Any]) -> None:
    """Its own JSON message, 422s for a missing address and when switched off."""
    svc: Service = await make_service()
    bad = await svc.http.post(
        "/magiclink", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "bad_json"
    assert bad.json()["msg"].startswith("Could not read verification params: ")
    nothing = await svc.http.post("/magiclink", content=b"")
    assert (nothing.status_code, nothing.json()["error_code"]) == (400, "bad_json")
    empty = await svc.http.post("/magiclink", json={})
    assert (empty.status_code, empty.json()["error_code"]) == (422, "validation_failed")
    assert empty.json()["msg"] == "Password recovery requires an email"
    off: Service = await make_service(external_email_magic_link_enabled=False)
    refused = await off.http.post("/magiclink", json={"email": email()})
    assert refused.status_code == 422
    assert refused.json()["msg"] == "Login with magic link is disabled"
    unread = await off.http.post("/magiclink", content=b"{not json")
    assert unread.json()["msg"] == "Login with magic link is disabled"
    no_email: Service = await make_service(external_email_enabled=False)
    refused = await no_email.http.post("/otp", json={"email": email()})
    assert (refused.status_code, refused.json()["error_code"]) == (422, "email_provider_disabled")
    closed: Service = await make_service(disable_signup=True)
    leak = await closed.http.post("/magiclink", json={"email": email()})
    assert (leak.status_code, leak.json()["error_code"]) == (422, "signup_disabled")


async def test_magiclink_under_autoconfirm_signs_up_then_sends_the_link(
    make_service: Callable[..., Any],
) -> None:
    """Autoconfirm: the new user is confirmed at once and gets a magic link, not a confirmation."""
    svc: Service = await make_service(
        mailer_autoconfirm=True, password_required_characters="abc:XYZ:123"
    )
    address = email()
    response = await svc.http.post("/magiclink", json={"email": address})
    assert (response.status_code, response.json()) == (200, {})
    assert [mail.subject for mail in mails_to(svc, address)] == ["Your sign-in link"]


async def test_magiclink_pkce_flow(svc: Service) -> None:
    """A PKCE magic link redirects with a code that the verifier exchanges."""
    address, _ = await signed_in(svc)
    await svc.http.post(
        "/magiclink",
        json={"email": address, "code_challenge": VERIFIER, "code_challenge_method": "plain"},
    )
    link = svc.link(address)
    response = await svc.http.get(link.replace("http://auth.test", ""))
    code = query(response.headers["location"])["code"][0]
    exchanged = await svc.http.post(
        "/token?grant_type=pkce", json={"auth_code": code, "code_verifier": VERIFIER}
    )
    assert exchanged.status_code == 200


async def test_resend_signup(make_service: Callable[..., Any]) -> None:
    """A pending sign-up gets its confirmation again; the new code confirms."""
    svc: Service = await make_service(smtp_max_frequency="1us")
    address = email()
    await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    first = svc.otp(address)
    response = await svc.http.post("/resend", json={"type": "signup", "email": address})
    assert (response.status_code, response.json()) == (200, {})
    second = svc.otp(address)
    assert len(mails_to(svc, address)) == 2
    stale = await svc.http.post(
        "/verify", json={"type": "signup", "email": address, "token": first}
    )
    assert (stale.status_code, first != second) == (403, True)
    verified = await svc.http.post(
        "/verify", json={"type": "signup", "email": address, "token": second}
    )
    assert verified.status_code == 200


async def test_resend_answers_empty_when_there_is_nothing_to_send(svc: Service) -> None:
    """Unknown, confirmed, no pending change, phone_change: all {} and no mail."""
    address, _ = await signed_in(svc)
    sent = len(svc.sent)
    for body in (
        {"type": "signup", "email": email()},
        {"type": "email_change", "email": email()},
        {"type": "signup", "email": address},
        {"type": "email_change", "email": address},
        {"type": "phone_change", "email": address},
    ):
        response = await svc.http.post("/resend", json=body)
        assert (response.status_code, response.json()) == (200, {}), body
    assert len(svc.sent) == sent


async def test_resend_interval_and_validation(make_service: Callable[..., Any]) -> None:
    """Inside the interval a pending sign-up is 429; bad requests are GoTrue's 400s."""
    svc: Service = await make_service()
    address = email()
    await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    limited = await svc.http.post("/resend", json={"type": "signup", "email": address})
    assert limited.status_code == 429
    cases: list[tuple[dict[str, Any], str]] = [
        ({"email": address}, "Missing one of these types: signup, email_change, sms, phone_change"),
        ({"type": "signup"}, "Type provided requires an email address"),
        ({"type": "sms", "email": address}, "Type provided requires a phone number"),
        (
            {"type": "sms", "email": address, "phone": "+15555550100"},
            "Only an email address or phone number should be provided.",
        ),
        ({"type": "email_change"}, "Missing email address or phone number"),
        # PKCE is checked first for the e-mail types, as GoTrue does.
        (
            {"type": "signup", "code_challenge": CHALLENGE},
            "PKCE flow requires code_challenge_method and code_challenge",
        ),
    ]
    for body, message in cases:
        response = await svc.http.post("/resend", json=body)
        assert response.status_code == 400, body
        assert response.json()["msg"] == message
    phone = await svc.http.post("/resend", json={"type": "sms", "phone": "+15555550100"})
    assert phone.json()["error_code"] == "phone_provider_disabled"
    off: Service = await make_service(external_email_enabled=False)
    refused = await off.http.post("/resend", json={"type": "signup", "email": address})
    assert refused.json()["error_code"] == "email_provider_disabled"


async def test_resend_signup_pkce(make_service: Callable[..., Any]) -> None:
    """A resend with a challenge gets a pkce_ link that redirects with a code."""
    svc: Service = await make_service(smtp_max_frequency="1us")
    address = email()
    await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    await svc.http.post(
        "/resend",
        json={
            "type": "signup",
            "email": address,
            "code_challenge": CHALLENGE,
            "code_challenge_method": "s256",
        },
    )
    response = await svc.http.get(svc.link(address).replace("http://auth.test", ""))
    code = query(response.headers["location"])["code"][0]
    exchanged = await svc.http.post(
        "/token?grant_type=pkce", json={"auth_code": code, "code_verifier": VERIFIER}
    )
    assert exchanged.status_code == 200

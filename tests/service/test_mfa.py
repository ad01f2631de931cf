"""MFA with TOTP factors (§3.18): enrol, challenge, verify, unenrol; aal and amr in
the tokens, the session raised to aal2 and kept so through refresh; on both databases."""

from __future__ import annotations

import base64
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from apitask_auth.storage.tables import mfa_factors, sessions, verify_attempts

from ._accounts import PASSWORD, bearer, signed_in
from ._mfa import (
    challenge,
    claims,
    enroll,
    error,
    methods,
    totp_code,
    verified_totp,
    verify,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service


async def _refresh(svc: Service, session: dict[str, Any]) -> Any:
    return await svc.http.post(
        "/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}
    )


async def _try_counts(svc: Service) -> list[str]:
    async with svc.app.state.service.engine.connect() as conn:
        return list((await conn.execute(select(verify_attempts.c.token_type))).scalars())


async def _sign_in(svc: Service, address: str) -> dict[str, Any]:
    response = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


async def test_totp_enrolment_answers_secret_uri_and_qr_code(svc: Service) -> None:
    """The answer carries a base32 secret of 160 bits, its otpauth:// URI (issuer: the
    site URL's host unless one is sent; account: the address) and the SVG QR code as
    text the clients turn into a data URI (so it has no "#"); GET /user lists the
    factor, unverified, without its secret."""
    address, session = await signed_in(svc)
    factor = await enroll(svc, session, friendly_name="phone app")
    assert (factor["type"], factor["friendly_name"]) == ("totp", "phone app")
    totp = factor["totp"]
    assert len(base64.b32decode(totp["secret"])) == 20
    uri = urlsplit(totp["uri"])
    query = parse_qs(uri.query)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert (query["secret"], query["issuer"]) == ([totp["secret"]], ["localhost:3000"])
    assert uri.path.endswith(address.replace("@", "%40"))
    assert totp["qr_code"].startswith("<svg") and "#" not in totp["qr_code"]
    named = await enroll(svc, session, friendly_name="other", issuer="Example Inc")
    assert parse_qs(urlsplit(named["totp"]["uri"]).query)["issuer"] == ["Example Inc"]

    user = (await svc.http.get("/user", headers=bearer(session))).json()
    listed = {listed["id"]: listed for listed in user["factors"]}
    assert set(listed) == {factor["id"], named["id"]}
    assert listed[factor["id"]]["status"] == "unverified"
    assert listed[factor["id"]]["factor_type"] == "totp"
    assert "secret" not in listed[factor["id"]]
    # A user with no factor has no "factors" key, as GoTrue omits it.
    _, other = await signed_in(svc)
    assert "factors" not in (await svc.http.get("/user", headers=bearer(other))).json()


async def test_verify_raises_the_session_to_aal2(svc: Service) -> None:
    """A right code: the factor is verified, the session becomes aal2 with ``totp``
    first in its amr, a new refresh token is issued, refreshing keeps aal2, the
    user's aal1 sessions end, and the user's other unverified TOTP factors go."""
    address, session = await signed_in(svc)
    assert (claims(session)["aal"], methods(session)) == ("aal1", ["password"])
    other_session = await _sign_in(svc, address)
    spare = await enroll(svc, session, friendly_name="spare")
    factor = await enroll(svc, session, friendly_name="main")
    challenge_id = await challenge(svc, session, factor["id"])
    response = await verify(svc, session, factor["id"], challenge_id, totp_code(factor))
    assert response.status_code == 200, response.text
    raised = response.json()
    assert raised["refresh_token"] != session["refresh_token"]
    token = claims(raised)
    assert (token["aal"], token["session_id"]) == ("aal2", claims(session)["session_id"])
    assert methods(raised) == ["totp", "password"]
    assert [f["id"] for f in raised["user"]["factors"]] == [factor["id"]]
    assert raised["user"]["factors"][0]["status"] == "verified"
    assert spare["id"] not in [f["id"] for f in raised["user"]["factors"]]

    refreshed = await _refresh(svc, raised)
    assert refreshed.status_code == 200, refreshed.text
    assert (claims(refreshed.json())["aal"], methods(refreshed.json())) == (
        "aal2",
        ["totp", "password"],
    )
    # The aal1 session signed in before the factor was verified is over.
    gone = await _refresh(svc, other_session)
    assert error(gone)[:2] == (400, "refresh_token_not_found")
    async with svc.app.state.service.engine.connect() as conn:
        row = (
            await conn.execute(select(sessions).where(sessions.c.id == token["session_id"]))
        ).one()
    assert (row.aal, row.factor_id) == ("aal2", factor["id"])


async def test_codes_from_a_step_away_are_accepted_others_refused(svc: Service) -> None:
    """GoTrue's skew of one 30-second step either side; two steps away is wrong."""
    _, session = await signed_in(svc)
    factor = await enroll(svc, session)
    challenge_id = await challenge(svc, session, factor["id"])
    far = await verify(svc, session, factor["id"], challenge_id, totp_code(factor, steps=3))
    assert error(far) == (422, "mfa_verification_failed", "Invalid TOTP code entered")
    near = await verify(svc, session, factor["id"], challenge_id, totp_code(factor, steps=-1))
    assert near.status_code == 200, near.text


async def test_wrong_codes_are_counted_per_factor(make_service: Callable[..., Any]) -> None:
    """GOTRUE_SECURITY_MAX_VERIFY_ATTEMPTS tries per factor: the last wrong one drops
    the factor's challenges, and then even the right code on a new challenge is
    refused, as a wrong one, until the count lapses (a challenge's lifetime idle)."""
    svc: Service = await make_service(security_max_verify_attempts=3)
    _, session = await signed_in(svc)
    factor = await enroll(svc, session)
    wrong = "000000" if totp_code(factor) != "000000" else "111111"
    first = await challenge(svc, session, factor["id"])
    for _ in range(2):
        response = await verify(svc, session, factor["id"], first, wrong)
        assert error(response) == (422, "mfa_verification_failed", "Invalid TOTP code entered")
    last = await verify(svc, session, factor["id"], first, wrong)
    assert error(last)[:2] == (422, "mfa_verification_failed")
    dropped = await verify(svc, session, factor["id"], first, totp_code(factor))
    assert error(dropped)[:2] == (422, "mfa_factor_not_found")
    second = await challenge(svc, session, factor["id"])
    refused = await verify(svc, session, factor["id"], second, totp_code(factor))
    assert error(refused) == (422, "mfa_verification_failed", "Invalid TOTP code entered")

    # Another factor of the same user has its own count.
    other = await enroll(svc, session, friendly_name="other")
    other_challenge = await challenge(svc, session, other["id"])
    fine = await verify(svc, session, other["id"], other_challenge, totp_code(other))
    assert fine.status_code == 200, fine.text


async def test_the_count_lapses_after_a_challenge_lifetime(
    make_service: Callable[..., Any],
) -> None:
    """A count idle for GOTRUE_MFA_CHALLENGE_EXPIRY_DURATION starts again: the factor
    is never locked for good."""
    from datetime import timedelta

    from sqlalchemy import update

    from apitask_auth.storage.tables import now

    svc: Service = await make_service(security_max_verify_attempts=1)
    _, session = await signed_in(svc)
    factor = await enroll(svc, session)
    wrong = "000000" if totp_code(factor) != "000000" else "111111"
    first = await challenge(svc, session, factor["id"])
    assert (await verify(svc, session, factor["id"], first, wrong)).status_code == 422
    second = await challenge(svc, session, factor["id"])
    locked = await verify(svc, session, factor["id"], second, totp_code(factor))
    assert error(locked)[:2] == (422, "mfa_verification_failed")
    async with svc.app.state.service.engine.begin() as conn:
        await conn.execute(
            update(verify_attempts).values(updated_at=now() - timedelta(seconds=301))
        )
    third = await challenge(svc, session, factor["id"])
    right = await verify(svc, session, factor["id"], third, totp_code(factor))
    assert right.status_code == 200, right.text


async def test_challenge_expiry_and_reuse(make_service: Callable[..., Any]) -> None:
    """A challenge lives GOTRUE_MFA_CHALLENGE_EXPIRY_DURATION (never under 300 s, as
    GoTrue): after that it is refused and deleted. A spent challenge is refused with
    GoTrue's IP-mismatch answer; an unknown one as not found."""
    from ._mfa import age_challenge

    svc: Service = await make_service(mfa_challenge_expiry_duration=10)
    _, session = await signed_in(svc)
    factor = await enroll(svc, session)
    before = int(time.time())
    response = await svc.http.post(f"/factors/{factor['id']}/challenge", headers=bearer(session))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "totp"
    assert before + 300 <= body["expires_at"] <= int(time.time()) + 300
    await age_challenge(svc, body["id"], 299)
    wrong = "000000" if totp_code(factor) != "000000" else "111111"
    alive = await verify(svc, session, factor["id"], body["id"], wrong)
    assert error(alive)[:2] == (422, "mfa_verification_failed")  # compared: not expired yet
    await age_challenge(svc, body["id"], 301)
    expired = await verify(svc, session, factor["id"], body["id"], totp_code(factor))
    assert error(expired) == (
        422,
        "mfa_challenge_expired",
        f"MFA challenge {body['id']} has expired, verify against another challenge or "
        "create a new challenge.",
    )
    again = await verify(svc, session, factor["id"], body["id"], totp_code(factor))
    assert error(again) == (
        422,
        "mfa_factor_not_found",
        "MFA factor with the provided challenge ID not found",
    )
    fresh = await challenge(svc, session, factor["id"])
    assert (await verify(svc, session, factor["id"], fresh, totp_code(factor))).status_code == 200
    spent = await verify(svc, session, factor["id"], fresh, totp_code(factor))
    assert error(spent) == (
        422,
        "mfa_ip_address_mismatch",
        "Challenge and verify IP addresses mismatch.",
    )
    empty = await verify(svc, session, factor["id"], fresh, "")
    assert error(empty) == (400, "validation_failed", "Code needs to be non-empty")


async def test_enrolment_rules(make_service: Callable[..., Any]) -> None:
    """GoTrue's validateFactors: a friendly name once per user (the empty one too),
    GOTRUE_MFA_MAX_ENROLLED_FACTORS, and aal2 to add a factor once one is verified."""
    svc: Service = await make_service(mfa_max_enrolled_factors=3)
    address, session = await signed_in(svc)
    await enroll(svc, session, friendly_name="a")
    taken = await svc.http.post(
        "/factors", json={"factor_type": "totp", "friendly_name": "a"}, headers=bearer(session)
    )
    assert error(taken) == (
        422,
        "mfa_factor_name_conflict",
        'A factor with the friendly name "a" for this user already exists',
    )
    await enroll(svc, session)
    unnamed = await svc.http.post("/factors", json={"factor_type": "totp"}, headers=bearer(session))
    assert error(unnamed)[:2] == (422, "mfa_factor_name_conflict")
    await enroll(svc, session, friendly_name="c")
    full = await svc.http.post(
        "/factors", json={"factor_type": "totp", "friendly_name": "d"}, headers=bearer(session)
    )
    assert error(full) == (
        422,
        "too_many_enrolled_mfa_factors",
        "Maximum number of verified factors reached, unenroll to continue",
    )

    _, other = await signed_in(svc)
    await verified_totp(svc, other, friendly_name="first")
    # A fresh password sign-in of that user is aal1 again.
    other_address = (await svc.http.get("/user", headers=bearer(other))).json()["email"]
    aal1 = await _sign_in(svc, other_address)
    assert claims(aal1)["aal"] == "aal1"
    refused = await svc.http.post(
        "/factors", json={"factor_type": "totp", "friendly_name": "x"}, headers=bearer(aal1)
    )
    assert error(refused) == (403, "insufficient_aal", "AAL2 required to enroll a new factor")
    assert address


async def test_request_checks_and_switches(make_service: Callable[..., Any]) -> None:
    """Bad factor types, the enroll and verify switches, unknown and foreign factors,
    and anonymous users, as GoTrue answers them."""
    svc: Service = await make_service(
        mfa_totp_enroll_enabled=False, external_anonymous_users_enabled=True
    )
    _, session = await signed_in(svc)
    auth = bearer(session)
    for body in ({"factor_type": "sms"}, {}):
        response = await svc.http.post("/factors", json=body, headers=auth)
        assert error(response) == (
            400,
            "validation_failed",
            "factor_type needs to be totp, phone, or webauthn",
        )
    wrong_type = await svc.http.post("/factors", json={"factor_type": 1}, headers=auth)
    assert error(wrong_type)[:2] == (400, "bad_json")
    for factor_type, label in (("totp", "TOTP"), ("phone", "Phone"), ("webauthn", "WebAuthn")):
        response = await svc.http.post("/factors", json={"factor_type": factor_type}, headers=auth)
        assert error(response) == (
            422,
            f"mfa_{factor_type}_enroll_not_enabled",
            f"MFA enroll is disabled for {label}",
        )
    for method, path in (
        ("POST", f"/factors/{uuid.uuid4()}/challenge"),
        ("POST", f"/factors/{uuid.uuid4()}/verify"),
        ("DELETE", f"/factors/{uuid.uuid4()}"),
    ):
        # No body: the factor is looked up first, as GoTrue's loadFactor middleware does.
        response = await svc.http.request(method, path, headers=auth)
        assert error(response) == (404, "mfa_factor_not_found", "Factor not found")
    malformed = await svc.http.delete("/factors/not-a-uuid", headers=auth)
    assert error(malformed) == (404, "validation_failed", "factor_id must be an UUID")
    unauthenticated = await svc.http.post("/factors", json={"factor_type": "totp"})
    assert error(unauthenticated)[:2] == (401, "no_authorization")

    anonymous = (await svc.http.post("/signup", json={})).json()
    refused = await svc.http.post(
        "/factors", json={"factor_type": "totp"}, headers=bearer(anonymous)
    )
    assert error(refused) == (
        403,
        "no_authorization",
        "Anonymous user not allowed to perform these actions",
    )

    # Verification off: a factor enrolled while it was on can be neither challenged
    # nor verified.
    on: Service = await make_service(mfa_totp_verify_enabled=False)
    _, session = await signed_in(on)
    factor = await enroll(on, session)
    response = await on.http.post(f"/factors/{factor['id']}/challenge", headers=bearer(session))
    assert error(response) == (
        422,
        "mfa_totp_verify_not_enabled",
        "MFA verification is disabled for TOTP",
    )
    # Someone else's factor is not found.
    _, stranger = await signed_in(on)
    foreign = await on.http.delete(f"/factors/{factor['id']}", headers=bearer(stranger))
    assert error(foreign) == (404, "mfa_factor_not_found", "Factor not found")


async def test_unenrol(svc: Service) -> None:
    """An unverified factor goes from any session; a verified one needs aal2, and
    its sessions fall back to aal1 without its amr method."""
    address, session = await signed_in(svc)
    loose = await enroll(svc, session, friendly_name="loose")
    tried = await challenge(svc, session, loose["id"])
    wrong = "000000" if totp_code(loose) != "000000" else "111111"
    assert (await verify(svc, session, loose["id"], tried, wrong)).status_code == 422
    assert f"mfa:{loose['id']}" in await _try_counts(svc)
    response = await svc.http.delete(f"/factors/{loose['id']}", headers=bearer(session))
    assert (response.status_code, response.json()) == (200, {"id": loose["id"]})
    assert f"mfa:{loose['id']}" not in await _try_counts(svc)  # gone with its factor

    factor, raised = await verified_totp(svc, session)
    aal1 = await _sign_in(svc, address)
    refused = await svc.http.delete(f"/factors/{factor['id']}", headers=bearer(aal1))
    assert error(refused) == (422, "insufficient_aal", "AAL2 required to unenroll verified factor")
    removed = await svc.http.delete(f"/factors/{factor['id']}", headers=bearer(raised))
    assert (removed.status_code, removed.json()) == (200, {"id": factor["id"]})
    refreshed = (await _refresh(svc, raised)).json()
    assert (claims(refreshed)["aal"], methods(refreshed)) == ("aal1", ["password"])
    async with svc.app.state.service.engine.connect() as conn:
        left = (await conn.execute(select(mfa_factors.c.id))).all()
    assert factor["id"] not in [row.id for row in left]


async def test_admin_factor_routes(svc: Service) -> None:
    """GET lists a user's factors, PUT renames one, DELETE removes one whatever its
    state (the sessions it raised fall back to aal1); unknown users and factors 404."""
    admin = svc.admin_headers()
    _, session = await signed_in(svc)
    user_id = claims(session)["sub"]
    factor, raised = await verified_totp(svc, session, friendly_name="main")
    listed = await svc.http.get(f"/admin/users/{user_id}/factors", headers=admin)
    assert listed.status_code == 200
    assert [(f["id"], f["status"]) for f in listed.json()] == [(factor["id"], "verified")]

    renamed = await svc.http.put(
        f"/admin/users/{user_id}/factors/{factor['id']}",
        json={"friendly_name": "renamed"},
        headers=admin,
    )
    assert (renamed.status_code, renamed.json()["friendly_name"]) == (200, "renamed")

    deleted = await svc.http.delete(f"/admin/users/{user_id}/factors/{factor['id']}", headers=admin)
    assert (deleted.status_code, deleted.json()["id"]) == (200, factor["id"])
    assert (await svc.http.get(f"/admin/users/{user_id}/factors", headers=admin)).json() == []
    assert claims((await _refresh(svc, raised)).json())["aal"] == "aal1"

    for method in ("PUT", "DELETE"):
        response = await svc.http.request(
            method, f"/admin/users/{user_id}/factors/{uuid.uuid4()}", headers=admin
        )
        assert error(response) == (404, "mfa_factor_not_found", "Factor not found")
    _, later = await signed_in(svc)
    kept = await enroll(svc, later)
    no_body = await svc.http.put(
        f"/admin/users/{claims(later)['sub']}/factors/{kept['id']}", headers=admin
    )
    assert error(no_body)[:2] == (400, "bad_json")
    no_code = await svc.http.post(f"/factors/{kept['id']}/verify", headers=bearer(later))
    assert error(no_code)[:2] == (400, "bad_json")
    missing = await svc.http.get(f"/admin/users/{uuid.uuid4()}/factors", headers=admin)
    assert error(missing)[:2] == (404, "user_not_found")
    not_admin = await svc.http.get(f"/admin/users/{user_id}/factors", headers=bearer(session))
    assert error(not_admin)[:2] == (403, "not_admin")


async def test_challenge_and_verify_have_per_ip_limits(make_service: Callable[..., Any]) -> None:
    """GOTRUE_MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY per minute per client, in bursts of
    30, one bucket for challenges and one for verifies (GoTrue's two limiters)."""
    svc: Service = await make_service(
        rate_limit_header="X-Real-IP", mfa_rate_limit_challenge_and_verify=1
    )
    _, session = await signed_in(svc)
    factor = await enroll(svc, session)
    headers = {**bearer(session), "X-Real-IP": "203.0.113.9"}
    answers = [
        (await svc.http.post(f"/factors/{factor['id']}/challenge", headers=headers)).status_code
        for _ in range(31)
    ]
    assert answers == [200] * 30 + [429]
    verify_answer = await svc.http.post(
        f"/factors/{factor['id']}/verify",
        json={"challenge_id": str(uuid.uuid4()), "code": "1"},
        headers=headers,
    )
    assert error(verify_answer)[:2] == (422, "mfa_factor_not_found")


async def test_changing_address_or_password_needs_aal2_once_mfa_is_on(svc: Service) -> None:
    """GoTrue's PUT /user guard: with a verified factor, an aal1 session may change the
    metadata but not the password or the address; the aal2 session may."""
    address, session = await signed_in(svc)
    _, raised = await verified_totp(svc, session)
    aal1 = await _sign_in(svc, address)
    for body in ({"password": "another-password-1"}, {"email": "new-" + address}):
        response = await svc.http.put("/user", json=body, headers=bearer(aal1))
        assert error(response) == (
            401,
            "insufficient_aal",
            "AAL2 session is required to update email or password when MFA is enabled.",
        )
    fine = await svc.http.put("/user", json={"data": {"a": 1}}, headers=bearer(aal1))
    assert fine.status_code == 200, fine.text
    changed = await svc.http.put(
        "/user", json={"password": "another-password-1"}, headers=bearer(raised)
    )
    assert changed.status_code == 200, changed.text


async def test_verifying_again_refreshes_the_method(svc: Service) -> None:
    """A verified factor verified again: still aal2, one ``totp`` entry, its time
    the new one (GoTrue's upsert of the amr claim)."""
    _, session = await signed_in(svc)
    factor, raised = await verified_totp(svc, session)
    challenge_id = await challenge(svc, raised, factor["id"])
    again = await verify(svc, raised, factor["id"], challenge_id, totp_code(factor))
    assert again.status_code == 200, again.text
    assert methods(again.json()) == ["totp", "password"]
    assert claims(again.json())["amr"][0]["timestamp"] >= claims(raised)["amr"][0]["timestamp"]


async def test_a_token_without_a_session_cannot_use_factors(svc: Service) -> None:
    """MFA raises a session: a valid token without ``session_id`` is refused (GoTrue
    answers 500 there)."""
    import jwt as pyjwt

    from .conftest import SECRET

    _, session = await signed_in(svc)
    sub = claims(session)["sub"]
    token = pyjwt.encode({"sub": sub, "role": "authenticated"}, SECRET, algorithm="HS256")
    response = await svc.http.post(
        "/factors", json={"factor_type": "totp"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert error(response) == (
        403,
        "session_not_found",
        "Session from session_id claim in JWT does not exist",
    )


async def test_odd_input_is_answered_not_a_500(svc: Service) -> None:
    """An issuer too long for a QR code, odd characters in names and issuers, a
    challenge id that is no UUID, fields of the wrong JSON type: 4xx or 200."""
    _, session = await signed_in(svc)
    auth = bearer(session)
    too_long = await svc.http.post(
        "/factors", json={"factor_type": "totp", "issuer": "x" * 3000}, headers=auth
    )
    assert error(too_long) == (
        400,
        "validation_failed",
        "Error generating QR Code: issuer is too long",
    )
    odd = await enroll(svc, session, friendly_name="ünï 名前 :/?#", issuer="Ex:am ple/?&=#")
    assert parse_qs(urlsplit(odd["totp"]["uri"]).query)["issuer"] == ["Ex:am ple/?&=#"]
    assert "#" not in odd["totp"]["qr_code"]
    challenge_id = await challenge(svc, session, odd["id"])
    for body in (
        {"challenge_id": "x" * 500, "code": "123456"},
        {"challenge_id": None, "code": "123456"},
        {"challenge_id": challenge_id, "code": 123456},
        {"challenge_id": challenge_id, "code": "1" * 500},
    ):
        response = await svc.http.post(f"/factors/{odd['id']}/verify", json=body, headers=auth)
        assert 400 <= response.status_code < 500, (body, response.text)


async def test_soft_deleting_a_user_deletes_its_factors(svc: Service) -> None:
    """DELETE /admin/users/{id} with should_soft_delete: the factors go, as in GoTrue."""
    _, session = await signed_in(svc)
    user_id = claims(session)["sub"]
    await enroll(svc, session)
    deleted = await svc.http.request(
        "DELETE",
        f"/admin/users/{user_id}",
        json={"should_soft_delete": True},
        headers=svc.admin_headers(),
    )
    assert deleted.status_code == 200, deleted.text
    async with svc.app.state.service.engine.connect() as conn:
        left = (
            await conn.execute(select(mfa_factors.c.id).where(mfa_factors.c.user_id == user_id))
        ).all()
    assert left == []


async def test_migration_5_keeps_existing_sessions(database_url: str) -> None:
    """A database at version 4 with a signed-in user gets migration 5 alone: the
    factor tables, and ``sessions.factor_id`` empty on the session it had."""
    import asyncio
    from datetime import timedelta

    import pytest

    from apitask_auth.storage import migrations
    from apitask_auth.storage.db import create_engine
    from apitask_auth.storage.tables import metadata, new_id, now, users

    engine = await asyncio.to_thread(create_engine, database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.exec_driver_sql("DROP TABLE IF EXISTS schema_migrations")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:4])
            assert await migrations.migrate(engine) == [1, 2, 3, 4]
        user_id, session_id, at = new_id(), new_id(), now() - timedelta(minutes=1)
        async with engine.begin() as conn:
            await conn.execute(
                users.insert().values(
                    id=user_id,
                    aud="",
                    role="authenticated",
                    raw_app_meta_data={},
                    raw_user_meta_data={},
                    created_at=at,
                    updated_at=at,
                )
            )
            await conn.exec_driver_sql(
                "INSERT INTO sessions (id, user_id, aal, amr, created_at, updated_at) "
                f"VALUES ('{session_id}', '{user_id}', 'aal1', '[]', "
                f"'{at.isoformat(sep=' ')}', '{at.isoformat(sep=' ')}')"
            )
        assert await migrations.migrate(engine) == [
            version for version, _, _ in migrations.MIGRATIONS if version >= 5
        ]
        async with engine.connect() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.id == session_id))).one()
            assert (row.aal, row.factor_id) == ("aal1", None)
            assert (await conn.execute(select(mfa_factors))).all() == []
    finally:
        await engine.dispose()

"""GOTRUE_SECURITY_MAX_VERIFY_ATTEMPTS: a mailed code may be tried a few times, then it
is gone (attempts.py). Ours, not GoTrue's: GoTrue takes wrong codes without end."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from apitask_auth.http.timing import NOTHING_SENT, SENT, ResponseTimeMiddleware
from apitask_auth.storage import migrations
from apitask_auth.storage.db import create_engine
from apitask_auth.storage.tables import users, verify_attempts

from ._accounts import PASSWORD, age_session, bearer, fragment, signed_in
from .conftest import email

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pytest

    from .conftest import Service

NEW_PASSWORD = "another-secret-password"


def _wrong(code: str, n: int) -> str:
    """The ``n``-th code that is not ``code``."""
    return f"{(int(code) + n) % 10 ** len(code):0{len(code)}d}"


async def _verify(svc: Service, address: str, code: str, kind: str = "signup") -> httpx.Response:
    return await svc.http.post("/verify", json={"type": kind, "email": address, "token": code})


async def _signed_up(svc: Service) -> tuple[str, str]:
    """An unconfirmed account and the code mailed to it."""
    address = email()
    response = await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return address, svc.otp(address)


def _answer(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Everything a client sees of an answer."""
    return response.status_code, response.content, sorted(response.headers.items())


async def _failures(svc: Service, address: str, token_type: str) -> list[int]:
    """The counted tries of that address's code (PostgreSQL tests share a database)."""
    async with svc.app.state.service.engine.connect() as conn:
        rows = await conn.execute(
            select(verify_attempts.c.failures)
            .join(users, users.c.id == verify_attempts.c.user_id)
            .where(users.c.email == address, verify_attempts.c.token_type == token_type)
        )
        return list(rows.scalars())


async def test_the_code_is_gone_after_the_limit_and_the_answer_tells_nothing(
    make_service: Callable[..., Any],
) -> None:
    """Five wrong codes drop the code: the right one then gets the very answer a wrong
    one gets (byte for byte), and so does the mailed link; a new code works."""
    svc: Service = await make_service(smtp_max_frequency="1us")
    address, code = await _signed_up(svc)
    link = svc.link(address)
    wrong_answers = [_answer(await _verify(svc, address, _wrong(code, n))) for n in range(1, 6)]
    assert wrong_answers[0][0] == 403
    assert b'"error_code":"otp_expired"' in wrong_answers[0][1]
    assert b"Token has expired or is invalid" in wrong_answers[0][1]
    assert all(answer == wrong_answers[0] for answer in wrong_answers)
    assert _answer(await _verify(svc, address, code)) == wrong_answers[0]
    clicked = await svc.http.get(link.replace("http://auth.test", ""))
    assert fragment(clicked.headers["location"])["error_code"] == ["otp_expired"]
    resent = await svc.http.post("/resend", json={"type": "signup", "email": address})
    assert resent.status_code == 200, resent.text
    fresh = await _verify(svc, address, svc.otp(address))
    assert fresh.status_code == 200, fresh.text
    assert await _failures(svc, address, "confirmation_token") == []


async def test_tries_below_the_limit_leave_the_code(svc: Service) -> None:
    """Four wrong codes, then the right one: accepted (the default limit is five)."""
    address, code = await _signed_up(svc)
    for n in range(1, 5):
        assert (await _verify(svc, address, _wrong(code, n))).status_code == 403
    assert await _failures(svc, address, "confirmation_token") == [4]
    accepted = await _verify(svc, address, code)
    assert accepted.status_code == 200, accepted.text


async def test_a_new_code_starts_the_count_again(make_service: Callable[..., Any]) -> None:
    """Four wrong, a new code, four wrong again: the new code still works."""
    svc: Service = await make_service(smtp_max_frequency="1us")
    address, code = await _signed_up(svc)
    for n in range(1, 5):
        await _verify(svc, address, _wrong(code, n))
    await svc.http.post("/resend", json={"type": "signup", "email": address})
    code = svc.otp(address)
    for n in range(1, 5):
        await _verify(svc, address, _wrong(code, n))
    assert (await _verify(svc, address, code)).status_code == 200


async def test_the_limit_is_a_setting(make_service: Callable[..., Any]) -> None:
    """GOTRUE_SECURITY_MAX_VERIFY_ATTEMPTS=2: two wrong codes are the end."""
    svc: Service = await make_service(security_max_verify_attempts=2)
    address, code = await _signed_up(svc)
    for n in range(1, 3):
        await _verify(svc, address, _wrong(code, n))
    assert (await _verify(svc, address, code)).status_code == 403


async def test_the_count_survives_a_restart(make_service: Callable[..., Any]) -> None:
    """Three wrong on one instance, two on a new one on the same database: gone."""
    first: Service = await make_service()
    address, code = await _signed_up(first)
    for n in range(1, 4):
        await _verify(first, address, _wrong(code, n))
    second: Service = await make_service()
    for n in range(4, 6):
        assert (await _verify(second, address, _wrong(code, n))).status_code == 403
    assert (await _verify(second, address, code)).status_code == 403


async def test_concurrent_wrong_codes_are_all_counted(svc: Service) -> None:
    """Twenty wrong codes at once: each is counted (one atomic statement), none slips
    past the limit, and the right code is refused afterwards."""
    address, code = await _signed_up(svc)
    answers = await asyncio.gather(*(_verify(svc, address, _wrong(code, n)) for n in range(1, 21)))
    assert {answer.status_code for answer in answers} == {403}
    assert await _failures(svc, address, "confirmation_token") == [20]
    assert (await _verify(svc, address, code)).status_code == 403


async def test_concurrent_tries_with_the_right_code_compare_at_most_the_limit(
    svc: Service,
) -> None:
    """Ten tries at once, all with the right code: it opens one session at most, and
    the tries past the limit are refused without being compared."""
    address, code = await _signed_up(svc)
    answers = await asyncio.gather(*(_verify(svc, address, code) for _ in range(10)))
    assert sorted(answer.status_code for answer in answers) == [200] + [403] * 9


async def test_every_verify_type_counts_against_the_same_code(svc: Service) -> None:
    """A magic-link code tried as "magiclink" and as "email" shares one count."""
    address, _ = await signed_in(svc)
    sent = await svc.http.post("/otp", json={"email": address})
    assert sent.status_code == 200, sent.text
    code = svc.otp(address)
    for n in range(1, 4):
        assert (await _verify(svc, address, _wrong(code, n), "magiclink")).status_code == 403
    for n in range(4, 6):
        assert (await _verify(svc, address, _wrong(code, n), "email")).status_code == 403
    assert (await _verify(svc, address, code, "magiclink")).status_code == 403


async def test_email_change_codes_are_counted(make_service: Callable[..., Any]) -> None:
    """The code mailed to the new address, tried with that address, is counted too."""
    svc: Service = await make_service(mailer_secure_email_change_enabled=False)
    _, session = await signed_in(svc)
    new_address = email()
    changed = await svc.http.put("/user", json={"email": new_address}, headers=bearer(session))
    assert changed.status_code == 200, changed.text
    code = svc.otp(new_address)
    for n in range(1, 6):
        assert (await _verify(svc, new_address, _wrong(code, n), "email_change")).status_code == 403
    assert (await _verify(svc, new_address, code, "email_change")).status_code == 403
    unknown = await _verify(svc, email(), code, "email_change")
    assert unknown.status_code == 403


async def test_the_reauthentication_nonce_is_counted(make_service: Callable[..., Any]) -> None:
    """Five wrong nonces on PUT /user drop the nonce: the right one is refused, the
    password unchanged; a new nonce works."""
    svc: Service = await make_service(
        security_update_password_require_reauthentication=True, smtp_max_frequency="1us"
    )
    address, session = await signed_in(svc)
    await age_session(svc, session, 25)
    assert (await svc.http.get("/reauthenticate", headers=bearer(session))).status_code == 200
    nonce = svc.otp(address)

    async def change(with_nonce: str) -> httpx.Response:
        return await svc.http.put(
            "/user", json={"password": NEW_PASSWORD, "nonce": with_nonce}, headers=bearer(session)
        )

    for n in range(1, 6):
        wrong = await change(_wrong(nonce, n))
        assert (wrong.status_code, wrong.json()["error_code"]) == (
            422,
            "reauthentication_not_valid",
        )
    assert await _failures(svc, address, "reauthentication_token") == [5]
    refused = await change(nonce)
    assert (refused.status_code, refused.json()["error_code"]) == (
        422,
        "reauthentication_not_valid",
    )
    old_password = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert old_password.status_code == 200
    assert (await svc.http.get("/reauthenticate", headers=bearer(session))).status_code == 200
    accepted = await change(svc.otp(address))
    assert accepted.status_code == 200, accepted.text
    assert await _failures(svc, address, "reauthentication_token") == []


async def test_migration_4_adds_the_counts_to_an_older_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at version 3 gets verify_attempts from migration 4 alone."""
    # Building the engine touches the file system (SQLite paths): off the loop.
    engine = await asyncio.to_thread(create_engine, f"sqlite:///{tmp_path / 'old.db'}")
    try:
        monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
        assert await migrations.migrate(engine) == [1, 2, 3]
        monkeypatch.undo()
        later = [version for version, _, _ in migrations.MIGRATIONS[3:]]
        assert await migrations.migrate(engine) == later and later[0] == 4
        async with engine.connect() as conn:
            assert (await conn.execute(select(verify_attempts))).all() == []
    finally:
        await engine.dispose()


async def test_an_unknown_address_is_answered_as_late_as_a_counted_wrong_code(
    make_service: Callable[..., Any],
) -> None:
    """A wrong code for a known address commits its count, which an unknown address's
    answer does not: both are marked, so both wait for /verify's one deadline
    (timing.py), and a right code is no sample."""
    svc: Service = await make_service(security_match_response_times=False)
    waited: list[float] = []

    async def record_wait(deadline: float) -> None:
        waited.append(deadline)

    middleware = ResponseTimeMiddleware(svc.app, sleep_until=record_wait)
    address, code = await _signed_up(svc)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware), base_url="http://auth.test"
    ) as http:

        async def verify(to: str, token: str) -> int:
            body = {"type": "signup", "email": to, "token": token}
            return (await http.post("/verify", json=body)).status_code

        def samples() -> dict[str, int]:
            windows = middleware.deadlines.paths.get("/verify", {})
            return {outcome: len(window.recent) for outcome, window in windows.items()}

        assert await verify(address, _wrong(code, 1)) == 403
        assert samples() == {SENT: 1}
        assert await verify(email(), code) == 403
        assert samples() == {SENT: 1, NOTHING_SENT: 1}
        assert len(waited) == 2
        assert await verify(address, code) == 200
        assert samples() == {SENT: 1, NOTHING_SENT: 1}
        assert len(waited) == 2


async def test_a_token_hash_cannot_be_computed_from_the_address(svc: Service) -> None:
    """GoTrue's token hash, SHA-224 of address and code, can be computed for every code
    by anyone who knows the address, and a token_hash names no user, so its tries are
    not counted: it must not open the account. The mailed one (keyed) does."""
    address, code = await _signed_up(svc)
    gotrue_hash = hashlib.sha224((address + code).encode()).hexdigest()
    computed = await svc.http.post("/verify", json={"type": "signup", "token_hash": gotrue_hash})
    assert computed.status_code == 403
    mailed = parse_qs(urlsplit(svc.link(address)).query)["token"][0]
    assert len(mailed) == len(gotrue_hash) and mailed != gotrue_hash
    opened = await svc.http.post("/verify", json={"type": "signup", "token_hash": mailed})
    assert opened.status_code == 200, opened.text

"""One account per address under concurrency: N requests for one address at once,
in mixed case, create exactly one account; every loser answers as GoTrue answers
for an existing address in that flow, never a 500 (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from apitask_auth.accounts.users import AddressTakenError, update_user
from apitask_auth.storage.tables import users

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from .conftest import Service

N = 20
PASSWORD = "secret-password"


def _addresses() -> list[str]:
    """N spellings of one fresh address, alternating lower and mixed case."""
    local = f"race-{uuid.uuid4().hex[:8]}"
    return [
        f"{local}@example.com" if i % 2 else f"{local.capitalize()}@Example.com" for i in range(N)
    ]


async def _accounts(svc: Service, address: str) -> int:
    async with svc.app.state.service.engine.connect() as conn:
        count = select(func.count()).where(func.lower(users.c.email) == address.lower())
        return int((await conn.execute(count.select_from(users))).scalar_one())


def _answer(response: httpx.Response) -> tuple[int, str | None]:
    body: Any = response.json()
    return response.status_code, body.get("error_code") if response.status_code >= 400 else None


async def _race(
    svc: Service, send: Callable[[str], Any], allowed: set[tuple[int, str | None]]
) -> list[tuple[int, str | None]]:
    addresses = _addresses()
    responses = await asyncio.gather(*(send(address) for address in addresses))
    answers = [_answer(response) for response in responses]
    assert set(answers) <= allowed, [r.text for r in responses if _answer(r) not in allowed]
    assert await _accounts(svc, addresses[0]) == 1
    return answers


@pytest.fixture
async def racing(make_service: Callable[..., Any]) -> Callable[..., Any]:
    """A service whose global e-mail allowance does not limit N mails at once."""

    async def make(**overrides: Any) -> Service:
        service: Service = await make_service(rate_limit_email_sent="1000", **overrides)
        return service

    return make


async def test_concurrent_signups_with_autoconfirm(racing: Callable[..., Any]) -> None:
    """One sign-up wins with a session; the others get GoTrue's 422 user_already_exists."""
    svc: Service = await racing(mailer_autoconfirm=True)
    answers = await _race(
        svc,
        lambda address: svc.http.post("/signup", json={"email": address, "password": PASSWORD}),
        {(200, None), (422, "user_already_exists")},
    )
    assert answers.count((200, None)) == 1


async def test_concurrent_signups_with_confirmation(racing: Callable[..., Any]) -> None:
    """Without autoconfirm the losers meet an unconfirmed account: GoTrue mails it
    again, within the per-user interval that is a 429."""
    svc: Service = await racing()
    await _race(
        svc,
        lambda address: svc.http.post("/signup", json={"email": address, "password": PASSWORD}),
        {(200, None), (429, "over_email_send_rate_limit")},
    )


@pytest.mark.parametrize("path", ["/magiclink", "/otp"])
async def test_concurrent_magic_links(racing: Callable[..., Any], path: str) -> None:
    """Magic links (and OTPs that may create the user) for an unknown address sign it
    up once; the others act on that account."""
    svc: Service = await racing()
    await _race(
        svc,
        lambda address: svc.http.post(path, json={"email": address}),
        {(200, None), (429, "over_email_send_rate_limit")},
    )


async def test_concurrent_invites(racing: Callable[..., Any]) -> None:
    """Invites of one address create one account; the others invite that unconfirmed
    account again (invites have no per-user interval)."""
    svc: Service = await racing()
    answers = await _race(
        svc,
        lambda address: svc.http.post(
            "/invite", json={"email": address}, headers=svc.admin_headers()
        ),
        {(200, None)},
    )
    assert len(answers) == N


async def test_concurrent_admin_creations(racing: Callable[..., Any]) -> None:
    """One admin creation wins; the others get GoTrue's 422 email_exists."""
    svc: Service = await racing()
    answers = await _race(
        svc,
        lambda address: svc.http.post(
            "/admin/users",
            json={"email": address, "password": PASSWORD, "email_confirm": True},
            headers=svc.admin_headers(),
        ),
        {(200, None), (422, "email_exists")},
    )
    assert answers.count((200, None)) == 1


async def test_concurrent_generated_signup_links(racing: Callable[..., Any]) -> None:
    """generate_link of type signup creates one account; the others make a link for it."""
    svc: Service = await racing()
    await _race(
        svc,
        lambda address: svc.http.post(
            "/admin/generate_link",
            json={"type": "signup", "email": address, "password": PASSWORD},
            headers=svc.admin_headers(),
        ),
        {(200, None)},
    )


async def test_concurrent_address_changes(racing: Callable[..., Any]) -> None:
    """N accounts changed at once (PUT /admin/users) to one new address: one gets it;
    the others get GoTrue's 422 email_exists (on PostgreSQL from the unique index, as
    both look-ups ran before either change committed), never a 500."""
    svc: Service = await racing()
    ids = []
    for n in range(N // 2):
        created = await svc.http.post(
            "/admin/users",
            json={"email": f"change-{uuid.uuid4().hex[:8]}-{n}@example.com"},
            headers=svc.admin_headers(),
        )
        assert created.status_code == 200, created.text
        ids.append(created.json()["id"])
    target = _addresses()
    responses = await asyncio.gather(
        *(
            svc.http.put(
                f"/admin/users/{user_id}", json={"email": address}, headers=svc.admin_headers()
            )
            for user_id, address in zip(ids, target, strict=False)
        )
    )
    answers = [_answer(response) for response in responses]
    assert sorted(answers) == [(200, None)] + [(422, "email_exists")] * (N // 2 - 1)
    assert await _accounts(svc, target[0]) == 1


async def test_other_integrity_errors_are_not_taken_addresses(svc: Service) -> None:
    """update_user turns only the address index's refusal into AddressTakenError; any
    other constraint failure stays what it is."""
    created = await svc.http.post(
        "/admin/users", json={"email": "nulls@example.com"}, headers=svc.admin_headers()
    )
    engine = svc.app.state.service.engine
    with pytest.raises(IntegrityError) as failed:
        async with engine.begin() as conn:
            await update_user(conn, created.json()["id"], aud=None)
    raised: BaseException = failed.value  # typed wide: mypy knows no class is both
    assert not isinstance(raised, AddressTakenError)

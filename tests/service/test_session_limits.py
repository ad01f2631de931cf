"""GOTRUE_SESSIONS_TIMEBOX and GOTRUE_SESSIONS_INACTIVITY_TIMEOUT, as GoTrue's
refresh-token grant applies them (internal/tokens/service.go, Session.CheckValidity),
on SQLite and PostgreSQL.

Time passes by moving a session's timestamps into the past, never by waiting.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import jwt
from sqlalchemy import select, update

from apitask_auth.storage.stale_rows import run_sweep, stale_row_sweeps
from apitask_auth.storage.tables import now, refresh_tokens, sessions

from ._accounts import bearer, signed_in
from .conftest import SECRET

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    import httpx

    from .conftest import Service

HOUR = timedelta(hours=1)
EXPIRED = {
    "code": 400,
    "error_code": "session_expired",
    "msg": "Invalid Refresh Token: Session Expired",
}
INACTIVE = EXPIRED | {"msg": "Invalid Refresh Token: Session Expired (Inactivity)"}


async def _refresh(svc: Service, session: dict[str, Any]) -> httpx.Response:
    return await svc.http.post(
        "/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}
    )


def _session_id(session: dict[str, Any]) -> str:
    claims = jwt.decode(
        session["access_token"], SECRET, algorithms=["HS256"], options={"verify_aud": False}
    )
    session_id: str = claims["session_id"]
    return session_id


async def _row(svc: Service, session_id: str) -> Any:
    async with svc.app.state.service.engine.connect() as conn:
        return (await conn.execute(select(sessions).where(sessions.c.id == session_id))).first()


async def _move(svc: Service, session_id: str, **times: datetime | None) -> None:
    """Set the session's time columns (and its tokens' updated_at, if given)."""
    token_time = times.pop("token_updated_at", None)
    async with svc.app.state.service.engine.begin() as conn:
        await conn.execute(update(sessions).where(sessions.c.id == session_id).values(**times))
        if token_time is not None:
            await conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.session_id == session_id)
                .values(updated_at=token_time)
            )


async def test_timebox_ends_refreshes_at_not_after(make_service: Callable[..., Any]) -> None:
    """A session's not_after is its start plus the timebox; past it, the refresh
    grant answers GoTrue's 400 session_expired. Its access token still works until
    its exp and logging out still ends it, as in GoTrue (neither checks the timebox)."""
    svc: Service = await make_service(sessions_timebox="1s")
    _, session = await signed_in(svc)
    session_id = _session_id(session)
    row = await _row(svc, session_id)
    assert row.not_after == row.created_at + timedelta(seconds=1)

    # Within the timebox (created_at is GoTrue's reckoning too, so both move).
    at = now()
    await _move(svc, session_id, created_at=at, not_after=at + HOUR)
    refreshed = await _refresh(svc, session)
    assert refreshed.status_code == 200, refreshed.text
    session = refreshed.json()

    await _move(svc, session_id, not_after=now() - timedelta(seconds=1))
    refused = await _refresh(svc, session)
    assert (refused.status_code, refused.json()) == (400, EXPIRED)
    assert (await svc.http.get("/user", headers=bearer(session))).status_code == 200
    assert (await svc.http.post("/logout", headers=bearer(session))).status_code == 204
    assert await _row(svc, session_id) is None


async def test_timebox_counts_from_the_start_of_older_sessions(
    make_service: Callable[..., Any],
) -> None:
    """A session started before the timebox was set (no not_after) is bounded by
    created_at + timebox, as GoTrue reckons every session."""
    before: Service = await make_service()
    _, session = await signed_in(before)
    session_id = _session_id(session)
    assert (await _row(before, session_id)).not_after is None
    after: Service = await make_service(sessions_timebox="1h")
    refreshed = await _refresh(after, session)
    assert refreshed.status_code == 200, refreshed.text
    session = refreshed.json()
    await _move(after, session_id, created_at=now() - HOUR - timedelta(seconds=1))
    refused = await _refresh(after, session)
    assert (refused.status_code, refused.json()) == (400, EXPIRED)
    # Without the setting the same session refreshes: the limit is the setting's.
    assert (await _refresh(before, session)).status_code == 200


async def test_expired_sessions_go_with_the_cleanup(make_service: Callable[..., Any]) -> None:
    """The cleanup's not_after statements now find timeboxed sessions: their tokens
    are revoked a day past not_after, the sessions deleted at three days."""
    svc: Service = await make_service(sessions_timebox="1s", db_cleanup_enabled=False)
    _, session = await signed_in(svc)
    _, kept = await signed_in(svc)
    session_id = _session_id(session)
    # Three days and an hour later, as the cleanup sees it: the not_after sign-in set.
    not_after = (await _row(svc, session_id)).not_after
    assert not_after is not None
    await _move(svc, session_id, not_after=not_after - 3 * timedelta(days=1) - HOUR)
    engine = svc.app.state.service.engine
    for sweep in stale_row_sweeps(svc.settings):
        if sweep.table in {"refresh_tokens", "sessions"}:
            # Rows other tests left on a shared PostgreSQL database may come first.
            while await run_sweep(engine, sweep, now(), timeout=timedelta(seconds=5)):
                pass
    assert await _row(svc, session_id) is None
    assert await _row(svc, _session_id(kept)) is not None
    gone = await _refresh(svc, session)
    assert gone.json()["error_code"] == "refresh_token_not_found"


async def test_inactivity_timeout_counts_from_the_last_refresh(
    make_service: Callable[..., Any],
) -> None:
    """A session not refreshed for the timeout is refused (GoTrue's "(Inactivity)"
    message); each refresh starts the count again."""
    svc: Service = await make_service(sessions_inactivity_timeout="1h")
    _, session = await signed_in(svc)
    session_id = _session_id(session)
    refreshed = await _refresh(svc, session)
    assert refreshed.status_code == 200, refreshed.text
    session = refreshed.json()
    await _move(svc, session_id, refreshed_at=now() - HOUR + timedelta(minutes=1))
    refreshed = await _refresh(svc, session)
    assert refreshed.status_code == 200, refreshed.text
    session = refreshed.json()
    assert (await _row(svc, session_id)).refreshed_at > now() - timedelta(minutes=1)

    await _move(svc, session_id, refreshed_at=now() - HOUR - timedelta(seconds=1))
    refused = await _refresh(svc, session)
    assert (refused.status_code, refused.json()) == (400, INACTIVE)


async def test_inactivity_of_a_never_refreshed_session(make_service: Callable[..., Any]) -> None:
    """Never refreshed: the count starts at the later of its start and its token's
    last change (GoTrue's LastRefreshedAt)."""
    svc: Service = await make_service(sessions_inactivity_timeout="1h")
    _, session = await signed_in(svc)
    session_id = _session_id(session)
    old = now() - 2 * HOUR
    await _move(svc, session_id, created_at=old, token_updated_at=now() - HOUR / 2)
    assert (await _row(svc, session_id)).refreshed_at is None
    assert (await _refresh(svc, session)).status_code == 200

    _, other = await signed_in(svc)
    await _move(svc, _session_id(other), created_at=old, token_updated_at=old)
    refused = await _refresh(svc, other)
    assert (refused.status_code, refused.json()) == (400, INACTIVE)

"""Sessions, refresh tokens and access tokens (§3.11, §3.13, §7).

A session is one sign-in; its refresh tokens form a chain (each refresh
revokes the token it was given and records it as the new token's parent).
A revoked token is answered as GoTrue answers it: the parent of the
session's active token gets that token back (the client lost the response
that carried it); within ``GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL`` of
its revocation it is swapped like an active one; after that it is refused
with ``refresh_token_already_used``, and with rotation on
(``GOTRUE_SECURITY_REFRESH_TOKEN_ROTATION_ENABLED``) the session ends too.

A session may be refreshed until its ``not_after`` (its start plus
``GOTRUE_SESSIONS_TIMEBOX``, stored when it starts, so the stale-row cleanup
finds it), and no longer than ``GOTRUE_SESSIONS_INACTIVITY_TIMEOUT`` after its
last refresh. Its access tokens live out their ``exp`` either way, as GoTrue's.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from apitask_auth.accounts.bodies import SessionBody
from apitask_auth.accounts.security import new_refresh_token
from apitask_auth.accounts.users import User, refuse_if_banned, update_user, user_body
from apitask_auth.errors import APIError, ErrorCode, bad_request
from apitask_auth.storage.rows import Session, session_row
from apitask_auth.storage.tables import new_id, now, refresh_tokens, sessions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from sqlalchemy import Row
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.config import Settings

__all__ = [
    "AAL2_METHODS",
    "RefreshTokenReusedError",
    "add_method",
    "delete_session",
    "delete_sessions",
    "drop_sessions_below_aal2",
    "get_session",
    "issue_session",
    "lower_sessions_of_factor",
    "rotate_refresh_token",
    "refresh_session",
    "refresh_token_not_found",
    "session_response",
]


_ALREADY_USED = "Invalid Refresh Token: Already Used"
# The amr methods of a second factor: a session with one of them is aal2 (GoTrue's
# IsAAL2Claim).
AAL2_METHODS = frozenset({"totp", "mfa/phone", "mfa/webauthn"})


def refresh_token_not_found() -> APIError:
    """GoTrue's answer to a refresh token it does not know (whatever its form)."""
    return bad_request(
        ErrorCode.REFRESH_TOKEN_NOT_FOUND, "Invalid Refresh Token: Refresh Token Not Found"
    )


class RefreshTokenReusedError(APIError):
    """A revoked refresh token came back: the caller must end ``session_id``.

    Raised rather than handled here because the error rolls the caller's
    transaction back; the session is deleted in a transaction of its own.
    """

    def __init__(self, session_id: str) -> None:
        super().__init__(400, ErrorCode.REFRESH_TOKEN_ALREADY_USED, _ALREADY_USED)
        self.session_id = session_id


def _claims(settings: Settings, user: User, session: Session) -> dict[str, Any]:
    issued = int(now().timestamp())
    claims: dict[str, Any] = {}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    claims |= {
        "sub": user["id"],
        "aud": user["aud"],
        "exp": issued + settings.jwt_exp,
        "iat": issued,
        "email": user["email"] or "",
        "phone": user["phone"] or "",
        "app_metadata": user["raw_app_meta_data"],
        "user_metadata": user["raw_user_meta_data"],
        "role": user["role"],
        "aal": session["aal"],
        "amr": session["amr"],
        "session_id": session["id"],
        "is_anonymous": bool(user["is_anonymous"]),
    }
    return claims


async def session_response(
    conn: AsyncConnection,
    settings: Settings,
    user: User,
    session: Session,
    refresh_token: str,
) -> SessionBody:
    """GoTrue's session JSON (``S``) for a session and its current refresh token."""
    claims = _claims(settings, user, session)
    return SessionBody(
        access_token=settings.jwt_keyset.sign(claims),
        token_type="bearer",
        expires_in=settings.jwt_exp,
        expires_at=claims["exp"],
        refresh_token=refresh_token,
        user=await user_body(conn, user),
    )


async def _insert_refresh_token(
    conn: AsyncConnection, user_id: str, session_id: str, parent: str | None
) -> str:
    token = new_refresh_token()
    at = now()
    await conn.execute(
        refresh_tokens.insert().values(
            token=token,
            user_id=user_id,
            session_id=session_id,
            parent=parent,
            revoked=False,
            created_at=at,
            updated_at=at,
        )
    )
    return token


async def _active_token(conn: AsyncConnection, session_id: str) -> Row[int, str, str | None] | None:
    """The session's newest unrevoked refresh token (id, token, parent), if any."""
    query = (
        select(refresh_tokens.c.id, refresh_tokens.c.token, refresh_tokens.c.parent)
        .where(refresh_tokens.c.session_id == session_id)
        .where(refresh_tokens.c.revoked.is_(False))
        .order_by(refresh_tokens.c.id.desc())
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def issue_session(
    conn: AsyncConnection, settings: Settings, user: User, method: str
) -> SessionBody:
    """Start a session for ``user`` signed in by ``method`` and return ``S``."""
    at = now()
    timebox = settings.sessions_timebox
    session: Session = {
        "id": new_id(),
        "user_id": user["id"],
        "aal": "aal1",
        "amr": [{"method": method, "timestamp": int(at.timestamp())}],
        "not_after": at + timebox if timebox is not None else None,
        "factor_id": None,
        "refreshed_at": None,
        "created_at": at,
        "updated_at": at,
    }
    await conn.execute(sessions.insert().values(**session))
    token = await _insert_refresh_token(conn, user["id"], session["id"], None)
    user = await update_user(conn, user["id"], last_sign_in_at=at)
    return await session_response(conn, settings, user, session, token)


async def get_session(conn: AsyncConnection, session_id: str) -> Session | None:
    """The session with this id, or None."""
    row = (await conn.execute(select(sessions).where(sessions.c.id == session_id))).first()
    return session_row(row) if row is not None else None


def _expired(
    settings: Settings, session: Session, token_updated_at: datetime, at: datetime
) -> str | None:
    """Why the session may not be refreshed at ``at`` (GoTrue's message), or None
    (GoTrue's Session.CheckValidity, in its order)."""
    expired = "Invalid Refresh Token: Session Expired"
    if session["not_after"] is not None and at > session["not_after"]:
        return expired
    # Also from created_at, as GoTrue reckons it: a timebox set (or shortened) after a
    # session started bounds that session too, though its not_after says otherwise.
    timebox = settings.sessions_timebox
    if timebox is not None and at > session["created_at"] + timebox:
        return expired
    timeout = settings.sessions_inactivity_timeout
    if timeout is not None and at > _last_refreshed(session, token_updated_at) + timeout:
        return "Invalid Refresh Token: Session Expired (Inactivity)"
    return None


def _last_refreshed(session: Session, token_updated_at: datetime) -> datetime:
    """When the session was last refreshed (GoTrue's LastRefreshedAt): its
    ``refreshed_at``, else the presented token's last change if later than the start."""
    if session["refreshed_at"] is not None:
        return session["refreshed_at"]
    return max(session["created_at"], token_updated_at)


async def refresh_session(
    conn: AsyncConnection,
    settings: Settings,
    token: str,
    load_user: Callable[[AsyncConnection, str], Awaitable[User | None]],
) -> tuple[User, Session, str]:
    """Rotate ``token``; returns the user, the session and the refresh token to hand out.

    Raises:
        APIError: unknown token, reuse detected, banned user, gone or expired session.
    """
    # Locked (PostgreSQL): a concurrent refresh of the same token waits, then sees it
    # revoked and gets the same child back, as GoTrue's locked re-read gives.
    row = (
        await conn.execute(
            select(refresh_tokens).where(refresh_tokens.c.token == token).with_for_update()
        )
    ).first()
    not_found = refresh_token_not_found()
    if row is None:
        raise not_found
    session = await get_session(conn, row.session_id)
    user = await load_user(conn, row.user_id)
    if session is None or user is None:
        raise not_found
    refuse_if_banned(user, 400, "Invalid Refresh Token: User Banned")  # GoTrue's words
    at = now()
    expired = _expired(settings, session, row.updated_at, at)
    if expired is not None:
        raise bad_request(ErrorCode.SESSION_EXPIRED, expired)
    issued: str | None = None
    if row.revoked:
        # GoTrue's order (internal/tokens/service.go): the session's active token first,
        # then the reuse interval; rotation on or off only decides what reuse costs.
        active = await _active_token(conn, session["id"])
        reuse_window = timedelta(seconds=settings.security_refresh_token_reuse_interval)
        if active is not None and active.parent == token:
            # The client lost the answer that carried the active token: hand it out again.
            issued = active.token
        elif row.updated_at + reuse_window < at:
            if settings.security_refresh_token_rotation_enabled:
                # Someone else holds the chain: the session ends.
                raise RefreshTokenReusedError(session["id"])
            # Rotation off: this request fails, the session lives on (as GoTrue).
            raise bad_request(ErrorCode.REFRESH_TOKEN_ALREADY_USED, _ALREADY_USED)
    if issued is None:
        await conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.id == row.id)
            .values(revoked=True, updated_at=at)
        )
        issued = await _insert_refresh_token(conn, user["id"], session["id"], token)
    await conn.execute(
        update(sessions)
        .where(sessions.c.id == session["id"])
        .values(refreshed_at=at, updated_at=at)
    )
    return user, session, issued


async def delete_session(conn: AsyncConnection, session_id: str) -> None:
    """End one session (its refresh tokens go with it)."""
    await conn.execute(delete(sessions).where(sessions.c.id == session_id))


async def delete_sessions(
    conn: AsyncConnection, user_id: str, session_id: str | None, scope: str
) -> None:
    """Log out: ``global`` (all sessions), ``local`` (this one), ``others`` (all but this)."""
    query = delete(sessions).where(sessions.c.user_id == user_id)
    if scope == "local":
        query = query.where(sessions.c.id == session_id)
    elif scope == "others" and session_id is not None:
        query = query.where(sessions.c.id != session_id)
    await conn.execute(query)


# -- MFA: the assurance level a session reached (GoTrue's mfa_amr_claims) -------


def _aal(amr: list[dict[str, Any]]) -> str:
    return "aal2" if any(entry["method"] in AAL2_METHODS for entry in amr) else "aal1"


async def add_method(
    conn: AsyncConnection, session: Session, method: str, factor_id: str
) -> Session:
    """Record that the session's user also proved ``method`` now (GoTrue's
    AddClaimToSession, then UpdateAALAndAssociatedFactor).

    The amr list keeps one entry per method, newest first; a method proved
    again moves to the front with the new time. The session's aal follows.
    """
    at = now()
    entry = {"method": method, "timestamp": int(at.timestamp())}
    amr = [entry, *(old for old in session["amr"] if old["method"] != method)]
    changes = {"amr": amr, "aal": _aal(amr), "factor_id": factor_id, "updated_at": at}
    await conn.execute(update(sessions).where(sessions.c.id == session["id"]).values(**changes))
    return {**session, **changes}  # type: ignore[typeddict-item]


async def rotate_refresh_token(conn: AsyncConnection, user_id: str, session_id: str) -> str:
    """A new refresh token for the session, the active one revoked as its parent
    (GoTrue's GrantRefreshTokenSwap): the client holds the raised session's token."""
    active = await _active_token(conn, session_id)
    parent = None
    if active is not None:
        await conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.id == active.id)
            .values(revoked=True, updated_at=now())
        )
        parent = active.token
    return await _insert_refresh_token(conn, user_id, session_id, parent)


async def drop_sessions_below_aal2(conn: AsyncConnection, user_id: str) -> None:
    """End the user's aal1 sessions once a factor is verified (GoTrue's
    InvalidateSessionsWithAALLessThan): a second factor now guards the account."""
    await conn.execute(
        delete(sessions).where(sessions.c.user_id == user_id).where(sessions.c.aal != "aal2")
    )


async def lower_sessions_of_factor(
    conn: AsyncConnection, user_id: str, factor_id: str, method: str
) -> None:
    """The sessions a removed factor had raised go back to aal1 and lose its method
    (GoTrue's DowngradeSessionsToAAL1)."""
    rows = (
        await conn.execute(
            select(sessions.c.id, sessions.c.amr)
            .where(sessions.c.factor_id == factor_id)
            .where(sessions.c.user_id == user_id)
        )
    ).all()
    for row in rows:
        amr = [entry for entry in row.amr if entry["method"] != method]
        await conn.execute(
            update(sessions)
            .where(sessions.c.id == row.id)
            .values(amr=amr, aal="aal1", factor_id=None, updated_at=now())
        )

"""MFA endpoints (§3.18): ``/factors`` for the signed-in user, and the admin's
``/admin/users/{user_id}/factors``.

The rules are :mod:`apitask_auth.accounts.mfa`; a phone challenge's code goes
out through the service's texter (:mod:`apitask_auth.delivery.texter`).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import update

from apitask_auth.accounts import mfa
from apitask_auth.accounts.attempts import keeping_tries
from apitask_auth.accounts.audit import audit
from apitask_auth.accounts.factors import find_factor, list_factors
from apitask_auth.accounts.sessions import get_session, session_response
from apitask_auth.accounts.users import factor_json
from apitask_auth.errors import ErrorCode, bad_request, forbidden, unprocessable
from apitask_auth.http.deps import Admin, Auth, Svc  # noqa: TC001 - read by FastAPI
from apitask_auth.http.models import (
    AdminFactorParams,
    ChallengeFactorParams,
    EnrollFactorParams,
    VerifyFactorParams,
)
from apitask_auth.routes.admin import existing_user
from apitask_auth.storage.tables import mfa_factors, now

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.http.deps import AuthenticatedUser
    from apitask_auth.storage.rows import Session

__all__ = [
    "admin_delete_factor",
    "admin_list_factors",
    "admin_update_factor",
    "challenge",
    "enroll",
    "not_anonymous",
    "unenroll",
    "verify",
]

_FACTOR_TYPES = ("totp", "phone")
_Params = TypeVar("_Params", VerifyFactorParams, AdminFactorParams)


def _not_anonymous(caller: Auth) -> None:
    """GoTrue's requireNotAnonymous, read from the token as GoTrue reads it."""
    if caller.claims.get("is_anonymous") is True:
        raise forbidden(
            ErrorCode.NO_AUTHORIZATION, "Anonymous user not allowed to perform these actions"
        )


not_anonymous = Depends(_not_anonymous)
"""Every ``/factors`` route: an anonymous user has no second factor."""


def _sent(params: _Params | None) -> _Params:
    """The parsed body; no body at all is GoTrue's JSON error (after the factor is found)."""
    if params is None:
        raise bad_request(
            ErrorCode.BAD_JSON, "Could not parse request body as JSON: unexpected end of JSON input"
        )
    return params


def _ip(request: Request) -> str:
    return request.client.host if request.client else ""


async def _session(conn: AsyncConnection, caller: AuthenticatedUser) -> Session:
    """The caller's session: MFA raises a session, so a token without one is refused."""
    session = await get_session(conn, caller.session_id) if caller.session_id else None
    if session is None:
        raise forbidden(
            ErrorCode.SESSION_NOT_FOUND, "Session from session_id claim in JWT does not exist"
        )
    return session


async def enroll(params: EnrollFactorParams, request: Request, caller: Auth, svc: Svc) -> Response:
    """Add an unverified factor: TOTP (secret, URI, QR code) or phone."""
    factor_type = params.factor_type or ""
    if factor_type == "webauthn":  # not implemented: GoTrue's answer with it off
        raise unprocessable(
            ErrorCode.MFA_WEBAUTHN_ENROLL_NOT_ENABLED, "MFA enroll is disabled for WebAuthn"
        )
    if factor_type not in _FACTOR_TYPES:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "factor_type needs to be totp, phone, or webauthn"
        )
    mfa.check_type_enabled(svc.settings, factor_type, "enroll")
    name = params.friendly_name or ""
    user = caller.user
    async with svc.engine.begin() as conn:
        session = await _session(conn, caller)
        if factor_type == "totp":
            enrolled = await mfa.enroll_totp(
                conn, svc.settings, user, session, name, params.issuer or ""
            )
        else:
            enrolled = await mfa.enroll_phone(
                conn, svc.settings, user, session, name, params.phone or ""
            )
        traits = {"factor_id": enrolled.factor["id"], "factor_type": factor_type}
        await audit(conn, request, user["id"], user["email"] or "", "factor_in_progress", traits)
    body: dict[str, Any] = {
        "id": enrolled.factor["id"],
        "type": factor_type,
        "friendly_name": name,
    }
    if enrolled.totp is not None:
        body["totp"] = enrolled.totp
    if enrolled.phone:
        body["phone"] = enrolled.phone
    return JSONResponse(body)


async def challenge(
    factor_id: str,
    request: Request,
    caller: Auth,
    svc: Svc,
    params: ChallengeFactorParams | None = None,
) -> Response:
    """A new challenge of the factor; a phone factor is sent its code."""
    user = caller.user
    async with svc.engine.begin() as conn:
        factor = await find_factor(conn, user["id"], factor_id, lock=True)
        mfa.check_type_enabled(svc.settings, factor["factor_type"], "verify")
        channel = (params.channel if params else None) or ""
        challenge_id, expires_at = await mfa.challenge_factor(
            conn, svc.settings, svc.texter, user, factor, _ip(request), channel
        )
        traits = {"factor_id": factor["id"], "factor_status": factor["status"]}
        await audit(conn, request, user["id"], user["email"] or "", "challenge_created", traits)
    return JSONResponse(
        {"id": challenge_id, "type": factor["factor_type"], "expires_at": expires_at}
    )


async def verify(
    factor_id: str,
    request: Request,
    caller: Auth,
    svc: Svc,
    params: VerifyFactorParams | None = None,
) -> Response:
    """Prove the factor with a challenge's code: the session becomes aal2 and a new
    access and refresh token are issued."""
    user = caller.user  # verifying changes the session, not the user row
    async with keeping_tries(svc.engine) as conn:
        # The factor first, then the body: GoTrue's loadFactor runs before the handler.
        factor = await find_factor(conn, user["id"], factor_id, lock=True)
        params = _sent(params)
        code = params.code or ""
        if not code:
            raise bad_request(ErrorCode.VALIDATION_FAILED, "Code needs to be non-empty")
        challenge_id = params.challenge_id or ""
        mfa.check_type_enabled(svc.settings, factor["factor_type"], "verify")
        session = await _session(conn, caller)
        raised, token = await mfa.verify_factor(
            conn, svc.settings, user, session, factor, challenge_id, code, _ip(request)
        )
        traits = {
            "factor_id": factor["id"],
            "challenge_id": challenge_id,
            "factor_type": factor["factor_type"],
        }
        await audit(
            conn, request, user["id"], user["email"] or "", "verification_attempted", traits
        )
        body = await session_response(conn, svc.settings, user, raised, token)
    return JSONResponse(body.model_dump())


async def unenroll(factor_id: str, request: Request, caller: Auth, svc: Svc) -> Response:
    """Remove a factor (a verified one only from an aal2 session)."""
    user = caller.user
    async with svc.engine.begin() as conn:
        factor = await find_factor(conn, user["id"], factor_id, lock=True)
        session = await _session(conn, caller)
        await mfa.unenroll(conn, session, factor)
        traits = {
            "factor_id": factor["id"],
            "factor_status": factor["status"],
            "session_id": session["id"],
        }
        await audit(conn, request, user["id"], user["email"] or "", "factor_unenrolled", traits)
    return JSONResponse({"id": factor["id"]})


# -- admin ----------------------------------------------------------------------


async def admin_list_factors(user_id: str, svc: Svc) -> Response:
    """The user's factors."""
    async with svc.engine.connect() as conn:
        user = await existing_user(conn, user_id)
        factors = await list_factors(conn, user["id"])
    return JSONResponse([factor_json(factor).model_dump() for factor in factors])


async def admin_update_factor(
    user_id: str,
    factor_id: str,
    request: Request,
    svc: Svc,
    admin: Admin,
    params: AdminFactorParams | None = None,
) -> Response:
    """Rename a factor, or change a phone factor's number."""
    changes: dict[str, Any] = {}
    async with svc.engine.begin() as conn:
        user = await existing_user(conn, user_id)
        factor = await find_factor(conn, user["id"], factor_id, lock=True)
        params = _sent(params)
        if params.friendly_name:
            changes["friendly_name"] = params.friendly_name
        if params.phone and factor["factor_type"] == "phone":
            number = mfa.valid_phone(params.phone)
            if number is None:
                raise bad_request(
                    ErrorCode.VALIDATION_FAILED, "Invalid phone number format (E.164 required)"
                )
            changes["phone"] = number
        if changes:
            await conn.execute(
                update(mfa_factors)
                .where(mfa_factors.c.id == factor["id"])
                .values(**changes, updated_at=now())
            )
        traits = {
            "user_id": user["id"],
            "factor_id": factor["id"],
            "factor_type": factor["factor_type"],
        }
        role = str(admin.get("role", ""))
        await audit(conn, request, str(admin.get("sub") or ""), role, "factor_updated", traits)
        factor = await find_factor(conn, user["id"], factor_id)
    return JSONResponse(factor_json(factor).model_dump())


async def admin_delete_factor(user_id: str, factor_id: str, request: Request, svc: Svc) -> Response:
    """Delete a factor whatever its state; the sessions it raised go back to aal1."""
    async with svc.engine.begin() as conn:
        user = await existing_user(conn, user_id)
        factor = await find_factor(conn, user["id"], factor_id, lock=True)
        await mfa.remove_factor(conn, factor)
        traits = {"user_id": user["id"], "factor_id": factor["id"]}
        await audit(conn, request, user["id"], user["email"] or "", "factor_deleted", traits)
    return JSONResponse(factor_json(factor).model_dump())

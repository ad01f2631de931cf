"""Per-request dependencies: the service, the caller's identity, the audience (§1.3, §1.4).

The route table (:mod:`apitask_auth.routes`) names each route's auth:
:data:`require_authentication` or :data:`require_admin_credentials` (GoTrue's
middleware names). A handler that reads the caller takes it as a parameter
too (:data:`Auth`, :data:`Admin`): FastAPI runs a dependency once per request,
so the check is not repeated.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import jwt
from fastapi import Depends, Request

from apitask_auth.accounts.sessions import get_session
from apitask_auth.accounts.users import User, get_user, refuse_if_banned
from apitask_auth.errors import ErrorCode, bad_request, forbidden, unauthorized

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from apitask_auth.config import Settings
    from apitask_auth.delivery.mailer import Mailer
    from apitask_auth.delivery.texter import Texter

__all__ = [
    "Admin",
    "Auth",
    "AuthenticatedUser",
    "Service",
    "Svc",
    "admin_claims",
    "request_aud",
    "require_admin_credentials",
    "require_authentication",
]


@dataclass(slots=True)
class Service:
    """What every handler uses: settings, database, mailer, texter."""

    settings: Settings
    engine: AsyncEngine
    mailer: Mailer
    texter: Texter


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


Svc = Annotated[Service, Depends(_service)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized(
            ErrorCode.NO_AUTHORIZATION, "This endpoint requires a valid Bearer token"
        )
    return token.strip()


def _claims(settings: Settings, token: str) -> dict[str, Any]:
    try:
        return settings.jwt_keyset.verify(token)
    except jwt.InvalidTokenError as exc:
        raise forbidden(
            ErrorCode.BAD_JWT, f"invalid JWT: unable to parse or verify signature, {exc}"
        ) from None


def request_aud(settings: Settings, request: Request, claims: dict[str, Any] | None = None) -> str:
    """The request's audience: X-JWT-AUD, the token's aud (non-admin), GOTRUE_JWT_AUD."""
    header = request.headers.get("x-jwt-aud")
    if header:
        return header
    if claims and claims.get("role") not in settings.jwt_admin_roles:
        aud = claims.get("aud")
        if isinstance(aud, list):
            aud = aud[0] if aud else None
        if isinstance(aud, str) and aud:
            return aud
    return settings.jwt_aud


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    """The caller of a user endpoint."""

    user: User
    claims: dict[str, Any]
    session_id: str | None


async def _authenticated(request: Request, service: Svc) -> AuthenticatedUser:
    claims = _claims(service.settings, _bearer(request))
    sub = claims.get("sub")
    if not sub or not isinstance(sub, str):
        raise forbidden(ErrorCode.BAD_JWT, "invalid claim: missing sub claim")
    try:
        uuid.UUID(sub)
    except ValueError:
        raise bad_request(ErrorCode.BAD_JWT, "invalid claim: sub claim must be a UUID") from None
    session_id = claims.get("session_id")
    async with service.engine.connect() as conn:
        user = await get_user(conn, sub)
        if user is None:
            raise forbidden(ErrorCode.USER_NOT_FOUND, "User from sub claim in JWT does not exist")
        if session_id is not None and (
            not isinstance(session_id, str) or await get_session(conn, session_id) is None
        ):
            raise forbidden(
                ErrorCode.SESSION_NOT_FOUND,
                "Session from session_id claim in JWT does not exist",
            )
    refuse_if_banned(user, 403)
    return AuthenticatedUser(user, claims, session_id)


def admin_claims(settings: Settings, token: str) -> dict[str, Any]:
    """The claims of ``token``, a verified JWT whose role is an admin role (§1.3).

    The one check of "is this an admin": the admin API's dependency and the
    apitask dashboard (:mod:`apitask_auth.http.admin_dashboard`) both call it.

    Raises:
        APIError: 403, the token is not verified (``bad_jwt``) or not an
            admin's (``not_admin``).
    """
    claims = _claims(settings, token)
    if claims.get("role") not in settings.jwt_admin_roles:
        raise forbidden(ErrorCode.NOT_ADMIN, "User not allowed")
    return claims


async def _admin(request: Request, service: Svc) -> dict[str, Any]:
    return admin_claims(service.settings, _bearer(request))


require_authentication = Depends(_authenticated)
"""A signed-in caller: a valid access token of an existing, unbanned user (§1.3)."""
require_admin_credentials = Depends(_admin)
"""An access token whose role is one of ``GOTRUE_JWT_ADMIN_ROLES`` (§1.3)."""

Auth = Annotated[AuthenticatedUser, require_authentication]
"""The signed-in caller, for a handler that reads it."""
Admin = Annotated[dict[str, Any], require_admin_credentials]
"""The admin token's claims, for a handler that reads them."""

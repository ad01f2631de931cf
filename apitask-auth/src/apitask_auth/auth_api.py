"""The public endpoints: signup, verify, token, user, logout (§3.1, §3.8, §3.11-§3.13)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import delete, select

from .audit import audit
from .db import flow_state, new_id, now
from .deps import Auth, Service, Svc, request_aud
from .email_change import SINGLE_CONFIRMATION, confirm_email_change
from .errors import APIError
from .flows import (
    check_password_strength,
    create_flow_state,
    latest_flow_state,
    send_token_mail,
    token_mail,
    validate_email,
    validate_pkce,
)
from .models import SignupParams, TokenParams, VerifyParams  # noqa: TC001 - read by FastAPI
from .notifications import notification_data, notify
from .redirects import redirect_to
from .security import check_password, hash_password, pkce_matches, token_hash
from .sessions import (
    RefreshTokenReusedError,
    delete_session,
    delete_sessions,
    issue_session,
    refresh_session,
    session_response,
)
from .timing import mark_nothing_sent, mark_sent
from .users import (
    User,
    clear_one_time_tokens,
    confirm_email,
    create_user,
    find_token,
    find_user_by_email,
    get_user,
    update_user,
    user_body,
    user_json,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from .config import Settings

__all__ = ["router"]

router = APIRouter()


def _is_confirmed(user: User) -> bool:
    return user["email_confirmed_at"] is not None


def _fake_user(email: str, aud: str, data: dict[str, Any], user: User) -> dict[str, Any]:
    """The anti-enumeration answer for a confirmed address (§3.1)."""
    at = now()
    fake = dict(user) | {
        "id": new_id(),
        "role": "",
        "aud": aud,
        "email": email,
        "phone": None,
        "created_at": at,
        "updated_at": at,
        "confirmation_sent_at": at,
        "email_confirmed_at": None,
        "phone_confirmed_at": None,
        "last_sign_in_at": None,
        "email_change_sent_at": None,
        "email_change": None,
        "raw_user_meta_data": data,
        "raw_app_meta_data": {"provider": "email", "providers": ["email"]},
    }
    return user_json(fake, [])


@router.post("/signup")
async def signup(params: SignupParams, request: Request, svc: Svc) -> Response:
    """Register with e-mail and password; confirm by mail unless autoconfirm is on."""
    settings = svc.settings
    if settings.disable_signup:
        raise APIError(422, "signup_disabled", "Signups not allowed for this instance")
    if not params.email and not params.phone:
        if not settings.external_anonymous_users_enabled:
            raise APIError(422, "anonymous_provider_disabled", "Anonymous sign-ins are disabled")
        raise APIError(422, "anonymous_provider_disabled", "Anonymous sign-ins are not supported")
    if not params.password:
        raise APIError(400, "validation_failed", "Signup requires a valid password")
    check_password_strength(settings, params.password)
    if params.email and params.phone:
        raise APIError(
            400,
            "validation_failed",
            "Only an email address or phone number should be provided on signup.",
        )
    pkce = validate_pkce(params.code_challenge, params.code_challenge_method)
    if params.phone:
        raise APIError(400, "phone_provider_disabled", "Phone signups are disabled")
    if not settings.external_email_enabled:
        raise APIError(400, "email_provider_disabled", "Email signups are disabled")
    email = validate_email(params.email)
    aud = request_aud(settings, request)
    data = params.data or {}
    redirect = redirect_to(settings, request)
    password_hash = await hash_password(params.password)
    async with svc.engine.begin() as conn:
        user = await find_user_by_email(conn, email, aud)
        if user is not None and _is_confirmed(user):
            if settings.mailer_autoconfirm:
                raise APIError(422, "user_already_exists", "User already registered")
            mark_nothing_sent(request)
            return JSONResponse(_fake_user(email, aud, data, user))
        if user is None:
            user = await create_user(
                conn,
                email=email,
                aud=aud,
                role=settings.jwt_default_group_name,
                encrypted_password=password_hash,
                user_metadata=data,
            )
        if settings.mailer_autoconfirm:
            user = await confirm_email(conn, user)
            await audit(conn, request, user["id"], email, "user_signedup", {"provider": "email"})
            return JSONResponse(await issue_session(conn, settings, user, "password"))
        if pkce is not None:
            await create_flow_state(conn, user["id"], pkce, "email/signup", "email")
        user = await send_token_mail(
            conn,
            settings,
            svc.mailer,
            request,
            user,
            token_mail(settings, "confirmation"),
            redirect,
            pkce=pkce is not None,
        )
        await audit(conn, request, user["id"], email, "user_confirmation_requested")
        body = await user_body(conn, user)
    mark_sent(request)
    if user["invited_at"] is not None:
        body["user_metadata"] = {}
        body["identities"] = []
    return JSONResponse(body)


# verify type -> (one_time_tokens types searched, *_sent_at column, AMR/flow method)
_VERIFY_TYPES: dict[str, tuple[list[str], str, str]] = {
    "signup": (["confirmation_token"], "confirmation_sent_at", "email/signup"),
    "invite": (["confirmation_token"], "confirmation_sent_at", "invite"),
    "recovery": (["recovery_token"], "recovery_sent_at", "recovery"),
    "magiclink": (["recovery_token"], "recovery_sent_at", "magiclink"),
    "email": (["confirmation_token", "recovery_token"], "confirmation_sent_at", "otp"),
    # GoTrue tries the current address's token first, then the new one's.
    "email_change": (
        ["email_change_token_current", "email_change_token_new"],
        "email_change_sent_at",
        "email_change",
    ),
}
_SENT_AT = {
    "confirmation_token": "confirmation_sent_at",
    "recovery_token": "recovery_sent_at",
    "email_change_token_current": "email_change_sent_at",
    "email_change_token_new": "email_change_sent_at",
}
_EFFECTIVE = {"confirmation_token": "signup", "recovery_token": "magiclink"}


def _expired(settings: Settings, user: User, token_type: str) -> bool:
    sent_at = user.get(_SENT_AT[token_type])
    return sent_at is None or sent_at + settings.otp_exp < now()


async def _verified_user(
    conn: AsyncConnection, settings: Settings, kind: str, stored_tokens: list[str], message: str
) -> tuple[User, str, str]:
    """Find and check the user a token belongs to.

    Returns:
        The user, the effective verification type, and the token type that matched.
    """
    token_types = _VERIFY_TYPES[kind][0]
    if kind == "email_change" and not settings.mailer_secure_email_change_enabled:
        token_types = ["email_change_token_new"]
    found = await find_token(conn, token_types, stored_tokens)
    if found is None or _expired(settings, found[0], found[1]):
        raise APIError(403, "otp_expired", message)
    user, token_type = found
    if user["banned_until"] is not None and user["banned_until"] > now():
        raise APIError(403, "user_banned", "User is banned")
    effective = _EFFECTIVE[token_type] if kind == "email" else kind
    return user, effective, token_type


async def _apply_verification(
    conn: AsyncConnection,
    settings: Settings,
    request: Request,
    user: User,
    kind: str,
    token_type: str,
) -> User | None:
    """Apply a checked token; None for the first of two e-mail-change confirmations."""
    if kind == "email_change":
        return await confirm_email_change(conn, settings, request, user, token_type)
    if kind in {"signup", "invite"}:
        user = await confirm_email(conn, user)
    else:
        user = await update_user(conn, user["id"], recovery_token=None)
        if not _is_confirmed(user):
            user = await confirm_email(conn, user)
    await clear_one_time_tokens(conn, user["id"])
    action = "user_signedup" if kind in {"signup", "invite"} else "login"
    await audit(conn, request, user["id"], user["email"] or "", action)
    return user


def _check_type(kind: str | None) -> str:
    if not kind:
        raise APIError(400, "validation_failed", "Verify requires a verification type")
    if kind not in _VERIFY_TYPES:
        raise APIError(400, "validation_failed", f"Unsupported verification type {kind!r}")
    return kind


def _with_fragment(url: str, values: dict[str, str], query: bool = False) -> str:
    parts = urlsplit(url)
    encoded = urlencode(sorted(values.items()))
    if query:
        merged = f"{parts.query}&{encoded}" if parts.query else encoded
        return urlunsplit(parts._replace(query=merged))
    return urlunsplit(parts._replace(fragment=encoded))


_OAUTH_ERRORS = {
    400: "invalid_request",
    401: "unauthorized_client",
    403: "access_denied",
    500: "server_error",
    503: "temporarily_unavailable",
}


@router.get("/verify", status_code=303)
async def verify_link(
    request: Request,
    svc: Svc,
    token: str | None = None,
    type: str | None = None,
) -> Response:
    """The link clicked from a mail: verify, then 303 to the redirect with a session or code."""
    settings = svc.settings
    kind = _check_type(type)
    if not token:
        raise APIError(400, "validation_failed", "Verify requires a token or a token hash")
    redirect = redirect_to(settings, request)
    is_pkce = token.startswith("pkce_")
    changed: tuple[User, str] | None = None
    try:
        async with svc.engine.begin() as conn:
            user, effective, token_type = await _verified_user(
                conn, settings, kind, [token], "Email link is invalid or has expired"
            )
            old_email = user["email"]
            applied = await _apply_verification(
                conn, settings, request, user, effective, token_type
            )
            if applied is None:
                target = _with_fragment(redirect, {"message": SINGLE_CONFIRMATION, "sb": ""})
                if is_pkce:
                    target = _with_fragment(target, {"message": SINGLE_CONFIRMATION}, query=True)
                return RedirectResponse(target, status_code=303)
            user = applied
            if effective == "email_change":
                changed = (user, old_email)
            if is_pkce:
                method = "email/signup" if effective.endswith("signup") else effective
                state = await latest_flow_state(conn, user["id"], method)
                if state is None:
                    raise APIError(
                        400,
                        "flow_state_not_found",
                        "No associated flow state found. "
                        "Flow state has expired or was not created.",
                    )
                await conn.execute(
                    flow_state.update()
                    .where(flow_state.c.id == state["id"])
                    .values(auth_code_issued_at=now())
                )
                target = _with_fragment(redirect, {"code": state["auth_code"]}, query=True)
            else:
                session = await issue_session(conn, settings, user, "otp")
                target = _with_fragment(
                    redirect,
                    {
                        "access_token": session["access_token"],
                        "expires_at": str(session["expires_at"]),
                        "expires_in": str(session["expires_in"]),
                        "refresh_token": session["refresh_token"],
                        "sb": "",
                        "token_type": "bearer",
                        "type": effective,
                    },
                )
    except APIError as error:
        values = {
            "error": _OAUTH_ERRORS.get(error.status, "server_error"),
            "error_code": error.code,
            "error_description": error.message,
            "sb": "",
        }
        target = _with_fragment(redirect, values)
        if is_pkce:
            target = _with_fragment(target, values, query=True)
    if changed is not None:
        await _notify_email_changed(svc, *changed)
    return RedirectResponse(target, status_code=303)


async def _notify_email_changed(svc: Service, user: User, old_email: str | None) -> None:
    """GoTrue's email_changed notification, to the old address, when switched on."""
    if svc.settings.mailer_notifications_email_changed_enabled and old_email:
        data = notification_data(svc, user["email"], user["raw_user_meta_data"], old_email)
        await notify(svc, "email_changed_notification", old_email, data)


@router.post("/verify")
async def verify_otp(params: VerifyParams, svc: Svc, request: Request) -> Response:
    """Verify an OTP (with its address) or a token hash; answers with a session."""
    settings = svc.settings
    if bool(params.token) == bool(params.token_hash):
        raise APIError(400, "validation_failed", "Verify requires either a token or a token hash")
    if params.token_hash and (params.email or params.phone or params.redirect_to):
        raise APIError(400, "validation_failed", "Only the token_hash and type should be provided")
    if params.token and bool(params.email) == bool(params.phone):
        raise APIError(
            400,
            "validation_failed",
            "Only an email address or phone number should be provided on verify",
        )
    kind = _check_type(params.type)
    if params.phone:
        raise APIError(400, "validation_failed", "Phone verification is not supported")
    async with svc.engine.begin() as conn:
        if params.token_hash:
            candidates = [params.token_hash]
            message = "Email link is invalid or has expired"
        else:
            try:
                email = validate_email(params.email)
            except APIError:
                raise APIError(422, "validation_failed", "Invalid email format") from None
            hashed = token_hash(email, params.token or "")
            candidates = [hashed, "pkce_" + hashed]
            message = "Token has expired or is invalid"
            # An e-mail change is confirmed with either address; the hash names it.
            if kind != "email_change":
                owner = await find_user_by_email(conn, email, request_aud(settings, request))
                if owner is None:
                    raise APIError(403, "otp_expired", message)
        user, effective, token_type = await _verified_user(
            conn, settings, kind, candidates, message
        )
        if params.token and kind != "email_change" and user["email"].lower() != email:
            raise APIError(403, "otp_expired", message)
        old_email = user["email"]
        applied = await _apply_verification(conn, settings, request, user, effective, token_type)
        if applied is None:
            # GoTrue's answer to the first of two confirmations; its code is a string.
            return JSONResponse({"msg": SINGLE_CONFIRMATION, "code": "200"})
        body = await issue_session(conn, settings, applied, "otp")
    if effective == "email_change":
        await _notify_email_changed(svc, applied, old_email)
    return JSONResponse(body)


@router.post("/token")
async def token(
    request: Request, svc: Svc, params: TokenParams, grant_type: str | None = None
) -> Response:
    """Sign in with a password, refresh a session, or exchange a PKCE code."""
    if grant_type == "password":
        return await _password_grant(request, svc, params)
    if grant_type == "refresh_token":
        return await _refresh_grant(request, svc, params)
    if grant_type == "pkce":
        return await _pkce_grant(svc, params)
    raise APIError(400, "invalid_credentials", "unsupported_grant_type")


def _session_headers(body: dict[str, Any]) -> dict[str, str]:
    return {
        "sb-auth-user-id": body["user"]["id"],
        "sb-auth-refresh-token-prefix": body["refresh_token"][:5],
    }


async def _password_grant(request: Request, svc: Svc, params: TokenParams) -> Response:
    settings = svc.settings
    if params.email and params.phone:
        raise APIError(
            400, "validation_failed", "Only an email address or phone number should be provided"
        )
    if not params.email and not params.phone:
        raise APIError(400, "validation_failed", "missing email or phone")
    if params.phone:
        raise APIError(400, "invalid_credentials", "Invalid login credentials")
    if not settings.external_email_enabled:
        raise APIError(422, "email_provider_disabled", "Email logins are disabled")
    invalid = APIError(400, "invalid_credentials", "Invalid login credentials")
    async with svc.engine.connect() as conn:
        user = await find_user_by_email(
            conn, (params.email or "").lower(), request_aud(settings, request)
        )
    # One bcrypt check whether or not the user exists: the time tells nothing.
    matches = await check_password(
        params.password or "", user["encrypted_password"] if user else None
    )
    if user is None or not matches:
        raise invalid
    if user["banned_until"] is not None and user["banned_until"] > now():
        raise APIError(400, "user_banned", "User is banned")
    if not _is_confirmed(user):
        raise APIError(400, "email_not_confirmed", "Email not confirmed")
    async with svc.engine.begin() as conn:
        body = await issue_session(conn, settings, user, "password")
        await audit(conn, request, user["id"], user["email"] or "", "login")
    return JSONResponse(body, headers=_session_headers(body))


async def _refresh_grant(request: Request, svc: Svc, params: TokenParams) -> Response:
    token = params.refresh_token or ""
    if len(token) != 12 or not token.isalnum() or not token.islower():
        raise APIError(400, "validation_failed", "Refresh token is not valid")
    try:
        async with svc.engine.begin() as conn:
            user, session, new_token = await refresh_session(conn, svc.settings, token, get_user)
            await audit(conn, request, user["id"], user["email"] or "", "token_refreshed")
            body = await session_response(conn, svc.settings, user, session, new_token)
    except RefreshTokenReusedError as reused:
        async with svc.engine.begin() as conn:
            await delete_session(conn, reused.session_id)
        raise
    return JSONResponse(body, headers=_session_headers(body))


async def _pkce_grant(svc: Svc, params: TokenParams) -> Response:
    if not params.auth_code or not params.code_verifier:
        raise APIError(
            400,
            "validation_failed",
            "invalid request: both auth code and code verifier should be non-empty",
        )
    async with svc.engine.begin() as conn:
        row = (
            await conn.execute(select(flow_state).where(flow_state.c.auth_code == params.auth_code))
        ).first()
        if row is None:
            raise APIError(
                404, "flow_state_not_found", "invalid flow state, no valid flow state found"
            )
        start = (
            row.auth_code_issued_at if row.authentication_method == "magiclink" else row.created_at
        )
        if start is None or start + svc.settings.flow_state_expiry < now():
            raise APIError(422, "flow_state_expired", "Flow state has expired")
        if not pkce_matches(params.code_verifier, row.code_challenge, row.code_challenge_method):
            raise APIError(
                400,
                "bad_code_verifier",
                "code challenge does not match previously saved code verifier",
            )
        user = await get_user(conn, row.user_id) if row.user_id else None
        if user is None:
            raise APIError(404, "user_not_found", "User not found")
        await conn.execute(delete(flow_state).where(flow_state.c.id == row.id))
        body = await issue_session(conn, svc.settings, user, row.authentication_method)
    return JSONResponse(body, headers=_session_headers(body))


@router.get("/user")
async def get_current_user(request: Request, caller: Auth, svc: Svc) -> Response:
    """The signed-in user."""
    token_aud = caller.claims.get("aud")
    if isinstance(token_aud, list):
        token_aud = token_aud[0] if token_aud else ""
    if token_aud != request_aud(svc.settings, request, caller.claims):
        raise APIError(400, "validation_failed", "Token audience doesn't match request audience")
    async with svc.engine.connect() as conn:
        return JSONResponse(await user_body(conn, caller.user))


@router.post("/logout", status_code=204)
async def logout(request: Request, caller: Auth, svc: Svc, scope: str = "global") -> Response:
    """End this session (``local``), all others (``others``), or every one (``global``)."""
    if scope not in {"global", "local", "others"}:
        raise APIError(400, "validation_failed", f'Unsupported logout scope "{scope}"')
    async with svc.engine.begin() as conn:
        await delete_sessions(conn, caller.user["id"], caller.session_id, scope)
        await audit(conn, request, caller.user["id"], caller.user["email"] or "", "logout")
    return Response(status_code=204)

"""The public endpoints: signup, token, user, logout (§3.1, §3.11-§3.13).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy import delete, select

from apitask_auth.accounts.audit import audit
from apitask_auth.accounts.flows import (
    check_password_strength,
    create_email_user,
    create_flow_state,
    send_token_mail,
    validate_email,
    validate_pkce,
)
from apitask_auth.accounts.phones import format_phone, is_e164, validate_channel, validate_phone
from apitask_auth.accounts.security import check_password, hash_password, pkce_matches
from apitask_auth.accounts.sessions import (
    RefreshTokenReusedError,
    delete_session,
    delete_sessions,
    issue_session,
    refresh_session,
    refresh_token_not_found,
    session_response,
)
from apitask_auth.accounts.users import (
    User,
    confirm_email,
    create_user,
    find_user_by_email,
    find_user_by_phone,
    get_user,
    is_confirmed,
    refuse_if_banned,
    retry_if_taken,
    sanitized_user,
    user_body,
)
from apitask_auth.errors import APIError, ErrorCode, bad_request, not_found, unprocessable
from apitask_auth.http.deps import Auth, Svc, request_aud
from apitask_auth.http.models import SignupParams, TokenParams
from apitask_auth.http.redirects import redirect_to
from apitask_auth.http.timing import mark_nothing_sent, mark_sent
from apitask_auth.routes.disabled import refuse_grant
from apitask_auth.routes.phone import check_phone_enabled, register_phone
from apitask_auth.storage.tables import flow_state, now

if TYPE_CHECKING:
    from fastapi.params import Depends as Dependency

    from apitask_auth.accounts.bodies import SessionBody
    from apitask_auth.config import Settings

__all__ = [
    "get_current_user",
    "is_anonymous_signup",
    "logout",
    "register_email",
    "signup",
    "signup_limit",
    "token",
]

# The refresh tokens we issue: 12 characters of lowercase letters and digits.
_REFRESH_TOKEN = re.compile(r"[a-z0-9]{12}")


def is_anonymous_signup(params: SignupParams) -> bool:
    """A sign-up with neither address nor phone asks for an anonymous user (§3.1)."""
    return not params.email and not params.phone


def signup_limit(
    settings: Settings, email_limit: Dependency, anonymous_limit: Dependency
) -> Dependency:
    """``/signup``'s per-IP limit: ``anonymous_limit`` for anonymous sign-ups,
    ``email_limit`` for the others, as GoTrue's route picks its limiter by the body.

    An anonymous sign-up while they are off draws on neither: GoTrue refuses it
    before its limiter. A body that is not a valid sign-up counts as an e-mail
    one; the endpoint answers for its fields after the limit.
    """

    async def limit_signup(request: Request) -> None:
        try:
            body = SignupParams.model_validate_json(await request.body() or b"{}")
        except ValidationError:
            body = None
        if body is None or not is_anonymous_signup(body):
            limit = email_limit
        elif settings.external_anonymous_users_enabled:
            limit = anonymous_limit
        else:
            return
        assert limit.dependency is not None  # RequestLimits's dependencies are functions
        await limit.dependency(request)

    chosen: Dependency = Depends(limit_signup)
    return chosen


async def _signup_anonymously(request: Request, svc: Svc, params: SignupParams) -> Response:
    """A new anonymous user and its session (GoTrue's SignupAnonymously).

    No address, identity or password; ``data`` is its ``user_metadata``. The
    session's ``amr`` method is ``anonymous`` and its token's ``is_anonymous``
    is true. GoTrue writes no audit entry for it, nor do we.
    """
    settings = svc.settings
    if settings.disable_signup:
        raise unprocessable(ErrorCode.SIGNUP_DISABLED, "Signups not allowed for this instance")
    async with svc.engine.begin() as conn:
        user = await create_user(
            conn,
            email=None,
            aud=request_aud(settings, request),
            role=settings.jwt_default_group_name,
            encrypted_password=None,
            user_metadata=params.data or {},
            anonymous=True,
        )
        body = await issue_session(conn, settings, user, "anonymous")
    return JSONResponse(body.model_dump())


async def signup(params: SignupParams, request: Request, svc: Svc) -> Response:
    """Register with e-mail or phone and a password (confirm by mail or text unless
    autoconfirm is on), or anonymously when neither address nor phone is given."""
    settings = svc.settings
    if is_anonymous_signup(params):
        if not settings.external_anonymous_users_enabled:
            raise unprocessable(
                ErrorCode.ANONYMOUS_PROVIDER_DISABLED, "Anonymous sign-ins are disabled"
            )
        return await _signup_anonymously(request, svc, params)
    if settings.disable_signup:
        raise unprocessable(ErrorCode.SIGNUP_DISABLED, "Signups not allowed for this instance")
    if not params.password:
        raise bad_request(ErrorCode.VALIDATION_FAILED, "Signup requires a valid password")
    check_password_strength(settings, params.password)
    if params.email and params.phone:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED,
            "Only an email address or phone number should be provided on signup.",
        )
    if params.phone:
        channel = validate_channel(params.channel)
        if params.code_challenge:  # a phone sign-up's session comes in the body
            raise bad_request(ErrorCode.VALIDATION_FAILED, "PKCE not supported for phone signups")
        check_phone_enabled(settings, "Phone signups are disabled")
        phone = validate_phone(params.phone)
        password_hash = await hash_password(params.password)
        return await register_phone(request, svc, phone, password_hash, params.data or {}, channel)
    validate_pkce(params.code_challenge, params.code_challenge_method)
    if not settings.external_email_enabled:
        raise bad_request(ErrorCode.EMAIL_PROVIDER_DISABLED, "Email signups are disabled")
    return await register_email(request, svc, params, await hash_password(params.password))


async def register_email(
    request: Request, svc: Svc, params: SignupParams, password_hash: str | None
) -> Response:
    """Sign ``params.email`` up (or answer for it if it has an account), as ``/signup`` does.

    ``password_hash`` is None for the sign-ups of ``/otp`` and ``/magiclink``:
    GoTrue stores a bcrypt of a random password nobody is told; we store no
    password (as GoTrue does for phone and anonymous users), which signs in
    the same way (never) and spares a bcrypt the known path would have to
    wait for (see timing.py).
    """
    settings = svc.settings
    if settings.disable_signup:
        raise unprocessable(ErrorCode.SIGNUP_DISABLED, "Signups not allowed for this instance")
    email = validate_email(params.email)
    pkce = validate_pkce(params.code_challenge, params.code_challenge_method)
    aud = request_aud(settings, request)
    data = params.data or {}
    redirect = redirect_to(settings, request)

    async def attempt() -> Response:
        async with svc.engine.begin() as conn:
            user = await find_user_by_email(conn, email, aud)
            if user is not None and is_confirmed(user):
                if settings.mailer_autoconfirm:
                    raise unprocessable(ErrorCode.USER_ALREADY_EXISTS, "User already registered")
                mark_nothing_sent(request)
                return JSONResponse(sanitized_user(user, "email", email, aud, data).model_dump())
            if user is None:
                user = await create_email_user(
                    conn,
                    settings,
                    email=email,
                    aud=aud,
                    encrypted_password=password_hash,
                    user_metadata=data,
                )
            if settings.mailer_autoconfirm:
                user = await confirm_email(conn, user)
                await audit(
                    conn, request, user["id"], email, "user_signedup", {"provider": "email"}
                )
                session = await issue_session(conn, settings, user, "password")
                return JSONResponse(session.model_dump())
            if pkce is not None:
                await create_flow_state(conn, user["id"], pkce, "email/signup", "email")
            user = await send_token_mail(
                conn,
                settings,
                svc.mailer,
                request,
                user,
                "confirmation",
                redirect,
                pkce=pkce is not None,
            )
            await audit(conn, request, user["id"], email, "user_confirmation_requested")
            body = await user_body(conn, user)
        mark_sent(request)
        if user["invited_at"] is not None:
            body.user_metadata = {}
            body.identities = []
        return JSONResponse(body.model_dump())

    # A concurrent sign-up of the same address may commit between our look-up and
    # our insert: run again, and answer as for an existing address.
    return await retry_if_taken(attempt)


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
    refused = refuse_grant(grant_type or "", await request.json())
    raise refused or bad_request(ErrorCode.INVALID_CREDENTIALS, "unsupported_grant_type")


def _session_response(body: SessionBody) -> JSONResponse:
    headers = {
        "sb-auth-user-id": body.user.id,
        "sb-auth-refresh-token-prefix": body.refresh_token[:5],
    }
    return JSONResponse(body.model_dump(), headers=headers)


async def _password_grant(request: Request, svc: Svc, params: TokenParams) -> Response:
    settings = svc.settings
    if params.email and params.phone:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Only an email address or phone number should be provided"
        )
    if not params.email and not params.phone:
        raise bad_request(ErrorCode.VALIDATION_FAILED, "missing email or phone")
    if params.phone:
        check_phone_enabled(settings, "Phone logins are disabled")
    elif not settings.external_email_enabled:
        raise unprocessable(ErrorCode.EMAIL_PROVIDER_DISABLED, "Email logins are disabled")
    invalid = bad_request(ErrorCode.INVALID_CREDENTIALS, "Invalid login credentials")
    user = await _password_user(request, svc, params)
    # One bcrypt check whether or not the user exists: the time tells nothing.
    matches = await check_password(
        params.password or "", user["encrypted_password"] if user else None
    )
    if user is None or not matches:
        raise invalid
    refuse_if_banned(user, 400)
    if params.phone and user["phone_confirmed_at"] is None:
        raise bad_request(ErrorCode.PHONE_NOT_CONFIRMED, "Phone not confirmed")
    if not params.phone and not is_confirmed(user):
        raise bad_request(ErrorCode.EMAIL_NOT_CONFIRMED, "Email not confirmed")
    async with svc.engine.begin() as conn:
        body = await issue_session(conn, settings, user, "password")
        await audit(conn, request, user["id"], user["email"] or user["phone"] or "", "login")
    return _session_response(body)


async def _password_user(request: Request, svc: Svc, params: TokenParams) -> User | None:
    """The account a password grant names by address or by number, if any.

    A number is only formatted (GoTrue's ``formatPhoneNumber``), not validated:
    one that is not E.164 has no account and is answered as an unknown one,
    like an address that is not one.
    """
    aud = request_aud(svc.settings, request)
    if params.phone:
        phone = format_phone(params.phone)
        if not is_e164(phone):
            return None
        async with svc.engine.connect() as conn:
            return await find_user_by_phone(conn, phone, aud)
    try:
        email = validate_email(params.email)
    except APIError:
        return None  # no account can have it: answered as an unknown address
    async with svc.engine.connect() as conn:
        return await find_user_by_email(conn, email, aud)


async def _refresh_grant(request: Request, svc: Svc, params: TokenParams) -> Response:
    token = params.refresh_token or ""
    if not token:
        # GoTrue's answer to an empty token is an OAuth-style error, in both API versions.
        return JSONResponse(
            {"error": "invalid_request", "error_description": "refresh_token required"},
            status_code=400,
        )
    if not _REFRESH_TOKEN.fullmatch(token):
        # No token we issue looks like this: unknown, as GoTrue says of any odd string
        # (and no lookup, so no text the database would refuse reaches it).
        raise refresh_token_not_found()
    try:
        async with svc.engine.begin() as conn:
            user, session, new_token = await refresh_session(conn, svc.settings, token, get_user)
            await audit(conn, request, user["id"], user["email"] or "", "token_refreshed")
            body = await session_response(conn, svc.settings, user, session, new_token)
    except RefreshTokenReusedError as reused:
        async with svc.engine.begin() as conn:
            await delete_session(conn, reused.session_id)
        raise
    return _session_response(body)


async def _pkce_grant(svc: Svc, params: TokenParams) -> Response:
    if not params.auth_code or not params.code_verifier:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED,
            "invalid request: both auth code and code verifier should be non-empty",
        )
    async with svc.engine.begin() as conn:
        row = (
            await conn.execute(select(flow_state).where(flow_state.c.auth_code == params.auth_code))
        ).first()
        if row is None:
            raise not_found(
                ErrorCode.FLOW_STATE_NOT_FOUND, "invalid flow state, no valid flow state found"
            )
        start = (
            row.auth_code_issued_at if row.authentication_method == "magiclink" else row.created_at
        )
        if start is None or start + svc.settings.flow_state_expiry < now():
            raise unprocessable(ErrorCode.FLOW_STATE_EXPIRED, "Flow state has expired")
        if not pkce_matches(params.code_verifier, row.code_challenge, row.code_challenge_method):
            raise bad_request(
                ErrorCode.BAD_CODE_VERIFIER,
                "code challenge does not match previously saved code verifier",
            )
        user = await get_user(conn, row.user_id) if row.user_id else None
        if user is None:
            raise not_found(ErrorCode.USER_NOT_FOUND, "User not found")
        await conn.execute(delete(flow_state).where(flow_state.c.id == row.id))
        body = await issue_session(conn, svc.settings, user, row.authentication_method)
    return _session_response(body)


async def get_current_user(request: Request, caller: Auth, svc: Svc) -> Response:
    """The signed-in user."""
    token_aud = caller.claims.get("aud")
    if isinstance(token_aud, list):
        token_aud = token_aud[0] if token_aud else ""
    if token_aud != request_aud(svc.settings, request, caller.claims):
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Token audience doesn't match request audience"
        )
    async with svc.engine.connect() as conn:
        return JSONResponse((await user_body(conn, caller.user)).model_dump())


async def logout(request: Request, caller: Auth, svc: Svc, scope: str = "global") -> Response:
    """End this session (``local``), all others (``others``), or every one (``global``)."""
    if scope not in {"global", "local", "others"}:
        raise bad_request(ErrorCode.VALIDATION_FAILED, f'Unsupported logout scope "{scope}"')
    async with svc.engine.begin() as conn:
        await delete_sessions(conn, caller.user["id"], caller.session_id, scope)
        await audit(conn, request, caller.user["id"], caller.user["email"] or "", "logout")
    return Response(status_code=204)

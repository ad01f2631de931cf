"""Sign-in and recovery by code: /recover, /magiclink, /otp, /resend (§3.2-§3.5);
the phone side of /otp and /resend is routes/phone.py's (§11).

Unknown addresses get the answers GoTrue gives them, so the status and body
do not tell whether an account exists (where GoTrue leaks, e.g.
``create_user: false`` on /otp, so do we: clients depend on it).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request  # noqa: TC002 - FastAPI reads the annotation at runtime
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from apitask_auth.accounts.audit import audit
from apitask_auth.accounts.email_change import send_email_change
from apitask_auth.accounts.flows import (
    create_flow_state,
    send_token_mail,
    validate_email,
    validate_pkce,
)
from apitask_auth.accounts.phone_codes import send_phone_code
from apitask_auth.accounts.phones import validate_channel, validate_phone
from apitask_auth.accounts.users import find_user_by_email, find_user_by_phone
from apitask_auth.errors import APIError, ErrorCode, bad_request, unprocessable
from apitask_auth.http.deps import Svc, request_aud
from apitask_auth.http.models import (
    MagicLinkParams,
    OtpParams,
    RecoverParams,
    ResendParams,
    SignupParams,
)
from apitask_auth.http.ratelimit import take_sms_allowance
from apitask_auth.http.redirects import redirect_to
from apitask_auth.http.timing import mark_nothing_sent, mark_outcome, mark_sent
from apitask_auth.routes.auth import register_email
from apitask_auth.routes.phone import check_phone_enabled, sms_otp

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.accounts.flows import PKCE
    from apitask_auth.accounts.users import User
    from apitask_auth.config import Settings
    from apitask_auth.delivery.mailer import Template
    from apitask_auth.http.deps import Service

__all__ = ["MAGICLINK_OPENAPI", "magiclink", "otp", "recover", "resend"]

SIGNED_UP = "signed up"
"""Response-time outcome of ``/otp`` and ``/magiclink`` for an address without a
confirmed account: it is signed up (a password hashed) and sent a confirmation."""


def _email_logins_disabled(status: int) -> APIError:
    return APIError(status, ErrorCode.EMAIL_PROVIDER_DISABLED, "Email logins are disabled")


async def _request_mail(
    conn: AsyncConnection,
    svc: Service,
    request: Request,
    user: User,
    template: Template,
    pkce: PKCE | None,
    flow: tuple[str, str],
    action: str,
) -> None:
    """Record the PKCE flow (method, provider type) if any, audit, and send the token mail."""
    if pkce is not None:
        await create_flow_state(conn, user["id"], pkce, *flow)
    await audit(conn, request, user["id"], user["email"] or "", action)
    await send_token_mail(
        conn,
        svc.settings,
        svc.mailer,
        request,
        user,
        template,
        redirect_to(svc.settings, request),
        pkce=pkce is not None,
    )


async def recover(params: RecoverParams, request: Request, svc: Svc) -> Response:
    """Mail a password-recovery link and code; ``{}`` whether or not the address exists."""
    settings = svc.settings
    if not settings.external_email_enabled:
        raise _email_logins_disabled(400)
    if not params.email:
        raise bad_request(ErrorCode.VALIDATION_FAILED, "Password recovery requires an email")
    email = validate_email(params.email)
    pkce = validate_pkce(params.code_challenge, params.code_challenge_method)
    async with svc.engine.begin() as conn:
        user = await find_user_by_email(conn, email, request_aud(settings, request))
        if user is None:
            mark_nothing_sent(request)
            return JSONResponse({})
        await _request_mail(
            conn,
            svc,
            request,
            user,
            "recovery",
            pkce,
            ("recovery", "recovery"),
            "user_recovery_requested",
        )
    mark_sent(request)
    return JSONResponse({})


def _check_magic_links_on(settings: Settings) -> None:
    if not settings.external_email_enabled:
        raise _email_logins_disabled(422)
    if not settings.external_email_magic_link_enabled:
        raise unprocessable(ErrorCode.EMAIL_PROVIDER_DISABLED, "Login with magic link is disabled")


async def _magic_link(request: Request, svc: Service, params: MagicLinkParams) -> Response:
    settings = svc.settings
    _check_magic_links_on(settings)
    if not params.email:
        raise unprocessable(ErrorCode.VALIDATION_FAILED, "Password recovery requires an email")
    email = validate_email(params.email)
    pkce = validate_pkce(params.code_challenge, params.code_challenge_method)
    aud = request_aud(settings, request)
    async with svc.engine.connect() as conn:
        user = await find_user_by_email(conn, email, aud)
    if user is None or user["email_confirmed_at"] is None:
        # GoTrue signs unknown and unconfirmed addresses up (with a throwaway
        # password; we store none); the confirmation mail serves as the link.
        await register_email(
            request,
            svc,
            SignupParams(
                email=email,
                data=params.data,
                code_challenge=params.code_challenge,
                code_challenge_method=params.code_challenge_method,
            ),
            password_hash=None,
        )
        response: Response = JSONResponse({})
        if settings.mailer_autoconfirm:  # now confirmed: this time a magic link goes out
            response = await _magic_link(request, svc, params)
        # Signing up hashes a password: slower than a magic link, so it is an
        # outcome of its own, whose time every answer on this path waits for.
        mark_outcome(request, SIGNED_UP)
        return response
    async with svc.engine.begin() as conn:
        await _request_mail(
            conn,
            svc,
            request,
            user,
            "magic_link",
            pkce,
            ("magiclink", "magiclink"),
            "user_recovery_requested",
        )
    mark_sent(request)
    return JSONResponse({})


MAGICLINK_OPENAPI = {
    "requestBody": {
        "content": {"application/json": {"schema": MagicLinkParams.model_json_schema()}},
        "required": True,
    }
}
"""The body /magiclink reads itself (after its own checks), for /openapi.json."""


async def magiclink(request: Request, svc: Svc) -> Response:
    """Mail a sign-in link (a confirmation mail for addresses without an account)."""
    _check_magic_links_on(svc.settings)  # before the body is read, as GoTrue does
    try:
        params = MagicLinkParams.model_validate_json(await request.body())
    except ValidationError as exc:
        detail = "; ".join(str(error["msg"]) for error in exc.errors())
        raise bad_request(
            ErrorCode.BAD_JSON, f"Could not read verification params: {detail}"
        ) from None
    return await _magic_link(request, svc, params)


async def otp(params: OtpParams, request: Request, svc: Svc) -> Response:
    """Mail a one-time code and link; with ``create_user: false`` only to known addresses."""
    if params.email and params.phone:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Only an email address or phone number should be provided"
        )
    if params.email and params.channel:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Channel should only be specified with Phone OTP"
        )
    validate_pkce(params.code_challenge, params.code_challenge_method)
    if not params.create_user and (params.email or params.phone):
        # GoTrue answers otp_disabled for an invalid address here too, but
        # validation_failed for an invalid number.
        known = False
        aud = request_aud(svc.settings, request)
        if params.phone:
            phone = validate_phone(params.phone)
            async with svc.engine.connect() as conn:
                known = await find_user_by_phone(conn, phone, aud) is not None
        else:
            try:
                email = validate_email(params.email)
            except APIError:
                email = ""
            if email:
                async with svc.engine.connect() as conn:
                    known = await find_user_by_email(conn, email, aud) is not None
        if not known:
            raise unprocessable(ErrorCode.OTP_DISABLED, "Signups not allowed for otp")
    if params.email:
        return await _magic_link(
            request,
            svc,
            MagicLinkParams(
                email=params.email,
                data=params.data or {},
                code_challenge=params.code_challenge,
                code_challenge_method=params.code_challenge_method,
            ),
        )
    if params.phone:
        check_phone_enabled(svc.settings, "Unsupported phone provider")
        channel = validate_channel(params.channel)
        phone = validate_phone(params.phone)
        return await sms_otp(request, svc, phone, channel, params.data or {})
    raise bad_request(ErrorCode.VALIDATION_FAILED, "One of email or phone must be set")


_RESEND_TYPES = ("signup", "email_change", "sms", "phone_change")


def _check_resend(settings: Settings, params: ResendParams) -> tuple[str, str, PKCE | None]:
    """GoTrue's resend validation, in its order; returns the address or the
    number (the other one ""), and any PKCE."""
    if params.type not in _RESEND_TYPES:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED,
            "Missing one of these types: signup, email_change, sms, phone_change",
        )
    pkce = None
    if params.type in {"signup", "email_change"}:
        pkce = validate_pkce(params.code_challenge, params.code_challenge_method)
    if not params.email and params.type == "signup":
        raise bad_request(ErrorCode.VALIDATION_FAILED, "Type provided requires an email address")
    if not params.phone and params.type == "sms":
        raise bad_request(ErrorCode.VALIDATION_FAILED, "Type provided requires a phone number")
    if params.email and params.phone:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Only an email address or phone number should be provided."
        )
    if params.phone:
        check_phone_enabled(settings, "Phone logins are disabled")
        return "", validate_phone(params.phone), pkce
    if not params.email:
        raise bad_request(ErrorCode.VALIDATION_FAILED, "Missing email address or phone number")
    if not settings.external_email_enabled:
        raise _email_logins_disabled(400)
    return validate_email(params.email), "", pkce


def _nothing_to_resend(user: User | None, kind: str | None) -> bool:
    """No account, or nothing pending of that kind: answered as an unknown address."""
    return (
        user is None
        or (kind == "signup" and user["email_confirmed_at"] is not None)
        or (kind == "sms" and user["phone_confirmed_at"] is not None)
        or (kind == "email_change" and not user["email_change"])
        or (kind == "phone_change" and not user["phone_change"])
    )


async def resend(params: ResendParams, request: Request, svc: Svc) -> Response:
    """Send a sign-up confirmation or e-mail-change mail again; ``{}`` when there is none."""
    settings = svc.settings
    email, phone, pkce = _check_resend(settings, params)
    redirect = redirect_to(settings, request)
    aud = request_aud(settings, request)
    async with svc.engine.begin() as conn:
        if phone:
            # Before the look-up: a known and an unknown number spend alike.
            await take_sms_allowance(conn, settings, request=request)
            user = await find_user_by_phone(conn, phone, aud)
        else:
            user = await find_user_by_email(conn, email, aud)
        # Nothing to resend answers exactly as an unknown address does.
        if user is None or _nothing_to_resend(user, params.type):
            mark_nothing_sent(request)
            return JSONResponse({})
        if params.type == "sms":
            await audit(conn, request, user["id"], phone, "user_recovery_requested")
            await send_phone_code(conn, settings, svc.texter, user, phone, "confirmation")
        elif params.type == "phone_change":
            new_phone = user["phone_change"] or ""
            await send_phone_code(conn, settings, svc.texter, user, new_phone, "phone_change")
        elif params.type == "signup":
            await _request_mail(
                conn,
                svc,
                request,
                user,
                "confirmation",
                pkce,
                ("email/signup", "email/signup"),
                "user_confirmation_requested",
            )
        else:
            if pkce is not None:
                await create_flow_state(conn, user["id"], pkce, "email_change", "email_change")
            await send_email_change(
                conn,
                settings,
                svc.mailer,
                request,
                user,
                user["email_change"] or "",
                redirect,
                pkce=pkce is not None,
            )
    mark_sent(request)
    return JSONResponse({})

"""The signed-in user changing their account: PUT /user and GET /reauthenticate (§3.9, §3.10).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi import Request  # noqa: TC002 - FastAPI reads the annotation at runtime
from fastapi.responses import JSONResponse, Response

from apitask_auth.accounts.attempts import CountedRefusal, count_try, drop_spent, keeping_tries
from apitask_auth.accounts.audit import audit
from apitask_auth.accounts.email_change import confirm_email_change, send_email_change
from apitask_auth.accounts.flows import (
    check_password_strength,
    create_flow_state,
    send_token_mail,
    validate_email,
    validate_pkce,
)
from apitask_auth.accounts.mfa import require_aal2_with_mfa
from apitask_auth.accounts.phone_codes import confirm_phone, send_phone_code
from apitask_auth.accounts.phones import validate_channel, validate_phone
from apitask_auth.accounts.security import (
    check_password,
    hash_password,
    otp_is_valid,
    token_hash,
)
from apitask_auth.accounts.sessions import delete_sessions, get_session
from apitask_auth.accounts.users import (
    User,
    clear_one_time_tokens,
    find_user_by_email,
    find_user_by_phone,
    get_user,
    update_user,
    user_body,
)
from apitask_auth.delivery.notifications import notification_data, notify
from apitask_auth.errors import ErrorCode, bad_request, forbidden, unprocessable
from apitask_auth.http.deps import Auth, Svc, request_aud
from apitask_auth.http.models import UserUpdateParams  # noqa: TC001 - read by FastAPI
from apitask_auth.http.ratelimit import take_sms_allowance
from apitask_auth.http.redirects import redirect_to
from apitask_auth.routes.phone import check_phone_enabled
from apitask_auth.storage.tables import now

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.config import Settings
    from apitask_auth.delivery.texter import Channel
    from apitask_auth.http.deps import AuthenticatedUser, Service

__all__ = ["reauthenticate", "update_current_user"]

# Sessions signed in by one of these came from a mailed code or link (GoTrue's IsRecovery).
_RECOVERY_METHODS = {"otp", "magiclink", "recovery"}
_NONCE = "reauthentication_token"
# Reauthentication is needed for a password change once the session is this old.
_FRESH_SESSION = timedelta(hours=24)


def _merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """GoTrue's metadata update: a shallow merge where null deletes the key."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


async def _check_nonce(conn: AsyncConnection, settings: Settings, user: User, nonce: str) -> None:
    """Spend the reauthentication code ``nonce`` (422 when it is wrong or stale).

    The try is counted first (attempts.py); a wrong nonce is a :class:`CountedRefusal`,
    so the count commits. Nothing is written before this in the transaction.
    """
    limit = settings.security_max_verify_attempts
    tries = await count_try(conn, limit, [user["id"]], [_NONCE])
    current = await get_user(conn, user["id"])
    assert current is not None  # the caller's own row, inside this transaction
    # The nonce was hashed with where it went, and lives as long as a code sent there
    # does: the address (a mail), or the number (a text), as in GoTrue.
    sent_to, lifetime = current["email"], settings.otp_exp
    if not sent_to:
        sent_to, lifetime = current["phone"] or "", settings.sms_code_exp
    if not otp_is_valid(
        token_hash(sent_to, nonce, settings.jwt_secret),
        current["reauthentication_token"],  # None once dropped at its last try
        current["reauthentication_sent_at"],
        lifetime,
        now(),
    ):
        await drop_spent(conn, tries.spent)
        raise CountedRefusal(
            422, ErrorCode.REAUTHENTICATION_NOT_VALID, "Nonce has expired or is invalid"
        )
    await update_user(conn, user["id"], reauthentication_token=None, reauthentication_sent_at=None)
    await clear_one_time_tokens(conn, user["id"])


async def _check_password_change(
    conn: AsyncConnection, settings: Settings, caller: AuthenticatedUser, params: UserUpdateParams
) -> None:
    """Reauthentication, the current password, and "not the same password" (§3.9)."""
    user = caller.user
    session = await get_session(conn, caller.session_id) if caller.session_id else None
    if settings.security_update_password_require_reauthentication and (
        session is None or session["created_at"] + _FRESH_SESSION < now()
    ):
        if not params.nonce:
            raise bad_request(
                ErrorCode.REAUTHENTICATION_NEEDED, "Password update requires reauthentication"
            )
        await _check_nonce(conn, settings, user, params.nonce)
    if not params.password or not user["encrypted_password"]:
        return
    recovering = session is not None and any(
        claim.get("method") in _RECOVERY_METHODS for claim in session["amr"]
    )
    if settings.security_update_password_require_current_password and not recovering:
        if not params.current_password:
            raise bad_request(
                ErrorCode.CURRENT_PASSWORD_REQUIRED,
                "Current password required when setting new password.",
            )
        if not await check_password(params.current_password, user["encrypted_password"]):
            raise bad_request(
                ErrorCode.CURRENT_PASSWORD_INVALID,
                "Current password required when setting new password.",
            )
    if await check_password(params.password, user["encrypted_password"]):
        raise unprocessable(
            ErrorCode.SAME_PASSWORD, "New password should be different from the old password."
        )


async def _set_password(conn: AsyncConnection, caller: AuthenticatedUser, password: str) -> User:
    """Store the new password; earlier mailed tokens and the other sessions end (as GoTrue)."""
    user = await update_user(
        conn,
        caller.user["id"],
        encrypted_password=await hash_password(password),
        confirmation_token=None,
        confirmation_sent_at=None,
        recovery_token=None,
        recovery_sent_at=None,
        email_change_token_current=None,
        email_change_token_new=None,
        email_change_sent_at=None,
        reauthentication_token=None,
        reauthentication_sent_at=None,
    )
    await clear_one_time_tokens(conn, user["id"])
    scope = "others" if caller.session_id else "global"
    await delete_sessions(conn, user["id"], caller.session_id, scope)
    return user


@dataclass(frozen=True, slots=True)
class _Changes:
    """What a PUT /user asks to change: "" for an address or number it leaves as is."""

    email: str
    phone: str
    channel: Channel


def _validate(settings: Settings, caller: AuthenticatedUser, params: UserUpdateParams) -> _Changes:
    """The checks before any database work, in GoTrue's order."""
    email = validate_email(params.email) if params.email else ""
    phone, channel = "", validate_channel(params.channel if params.phone else None)
    if params.phone:
        phone = validate_phone(params.phone)
        # Ours: GoTrue would text the code even with phone sign-in off.
        check_phone_enabled(settings, "Phone logins are disabled")
    if params.password is not None:
        check_password_strength(settings, params.password)
    user = caller.user
    if params.app_metadata is not None and not (
        user["aud"] == settings.jwt_aud and user["role"] == settings.jwt_admin_group_name
    ):
        raise forbidden(ErrorCode.NOT_ADMIN, "Updating app_metadata requires admin privileges")
    if user["is_anonymous"] and params.password and not email and not phone:
        raise unprocessable(
            ErrorCode.VALIDATION_FAILED,
            "Updating password of an anonymous user without an email or phone is not allowed",
        )
    return _Changes(
        email if email != (user["email"] or "") else "",
        phone if phone != (user["phone"] or "") else "",
        channel,
    )


async def update_current_user(
    params: UserUpdateParams, request: Request, caller: Auth, svc: Svc
) -> Response:
    """Change the user's data, password, address or number (the address and the
    number only once confirmed by a code)."""
    settings = svc.settings
    changes = _validate(settings, caller, params)
    new_email, new_phone = changes.email, changes.phone
    # GoTrue only looks at the PKCE fields when a challenge is given.
    pkce = (
        validate_pkce(params.code_challenge, params.code_challenge_method)
        if params.code_challenge
        else None
    )
    redirect = redirect_to(settings, request)
    user = caller.user
    # A wrong nonce commits its counted try (and whatever read came before it).
    async with keeping_tries(svc.engine) as conn:
        if params.password or new_email:
            await require_aal2_with_mfa(conn, user["id"], caller.session_id)
        if new_email and await find_user_by_email(
            conn, new_email, request_aud(settings, request, caller.claims)
        ):
            raise unprocessable(
                ErrorCode.EMAIL_EXISTS,
                "A user with this email address has already been registered",
            )
        if new_phone and await find_user_by_phone(
            conn, new_phone, request_aud(settings, request, caller.claims)
        ):
            raise unprocessable(
                ErrorCode.PHONE_EXISTS, "Phone number already registered by another user"
            )
        if params.password is not None:
            await _check_password_change(conn, settings, caller, params)
            user = await _set_password(conn, caller, params.password)
            await audit(conn, request, user["id"], user["email"] or "", "user_updated_password")
        if params.data is not None:
            metadata = _merge(user["raw_user_meta_data"], params.data)
            user = await update_user(conn, user["id"], raw_user_meta_data=metadata)
        if params.app_metadata is not None:
            app_metadata = _merge(user["raw_app_meta_data"], params.app_metadata)
            user = await update_user(conn, user["id"], raw_app_meta_data=app_metadata)
        if new_email and user["is_anonymous"] and settings.mailer_autoconfirm:
            # GoTrue: an anonymous user adding an address under autoconfirm is like a
            # sign-up, the address is theirs at once; anyone else confirms by mail.
            user = await update_user(conn, user["id"], email_change=new_email)
            confirmed = await confirm_email_change(
                conn, settings, request, user, "email_change_token_new"
            )
            assert confirmed is not None  # autoconfirm: never the first of two
            user = confirmed
        elif new_email:
            if pkce is not None:
                await create_flow_state(conn, user["id"], pkce, "email_change", "email_change")
            user = await send_email_change(
                conn,
                settings,
                svc.mailer,
                request,
                user,
                new_email,
                redirect,
                pkce=pkce is not None,
            )
        if new_phone:
            user = await _change_phone(conn, svc, request, user, new_phone, changes.channel)
        await audit(conn, request, user["id"], user["email"] or "", "user_modified")
        fresh = await get_user(conn, user["id"])
        assert fresh is not None  # the caller's own row, inside this transaction
        body = await user_body(conn, fresh)
    notice = settings.mailer_notifications_password_changed_enabled
    if params.password is not None and notice and fresh["email"]:
        data = notification_data(svc, fresh["email"], fresh["raw_user_meta_data"])
        await notify(svc, "password_changed_notification", fresh["email"], data, user=fresh)
    return JSONResponse(body.model_dump())


async def _change_phone(
    conn: AsyncConnection,
    svc: Service,
    request: Request,
    user: User,
    new_phone: str,
    channel: Channel,
) -> User:
    """Text a code to the new number (it becomes ``new_phone``); under
    ``GOTRUE_SMS_AUTOCONFIRM`` the number is the user's at once, as in GoTrue."""
    await take_sms_allowance(conn, svc.settings, request=request)
    if svc.settings.sms_autoconfirm:
        user = await update_user(conn, user["id"], phone_change=new_phone)
        return await confirm_phone(conn, request, user, "phone_change")
    return await send_phone_code(
        conn, svc.settings, svc.texter, user, new_phone, "phone_change", channel
    )


async def _reauthenticate_by_text(request: Request, svc: Service, user: User) -> Response:
    """GoTrue's reauthentication of a user with a number and no address: the nonce
    goes by text (hashed with the number, which :func:`_check_nonce` then uses)."""
    check_phone_enabled(svc.settings, "Phone logins are disabled")
    phone = user["phone"] or ""
    if user["phone_confirmed_at"] is None:
        raise unprocessable(ErrorCode.PHONE_NOT_CONFIRMED, "Please verify your phone first.")
    async with svc.engine.begin() as conn:
        await audit(conn, request, user["id"], phone, "user_reauthenticate_requested")
        await send_phone_code(conn, svc.settings, svc.texter, user, phone, "reauthentication")
    return JSONResponse({})


async def reauthenticate(request: Request, caller: Auth, svc: Svc) -> Response:
    """Mail (or text, to a user with no address) a code that authorizes a password
    change (``nonce`` on PUT /user)."""
    user = caller.user
    if not user["email"] and not user["phone"]:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED,
            "Reauthentication requires the user to have an email or a phone number",
        )
    if not user["email"]:
        return await _reauthenticate_by_text(request, svc, user)
    if user["email_confirmed_at"] is None:
        raise unprocessable(ErrorCode.EMAIL_NOT_CONFIRMED, "Please verify your email first.")
    async with svc.engine.begin() as conn:
        await audit(conn, request, user["id"], user["email"], "user_reauthenticate_requested")
        await send_token_mail(
            conn,
            svc.settings,
            svc.mailer,
            request,
            user,
            "reauthentication",
            "",
        )
    return JSONResponse({})

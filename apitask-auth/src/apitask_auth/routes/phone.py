"""The phone flows behind ``/signup``, ``/otp``, ``/resend`` and ``/verify`` (§11).

The endpoints (auth.py, recovery.py, verify.py) check what GoTrue checks for
every body and hand a request that names a ``phone`` to these functions.
Each takes one unit of the SMS allowance (``GOTRUE_RATE_LIMIT_SMS_SENT``)
before it looks the number up, so a known and an unknown number spend alike,
and marks its outcome for the response-time matching (timing.py) as the
e-mail flows do: the answer's status, body and time do not tell whether the
number has an account, except where GoTrue's own answers tell (``/otp`` with
``create_user: false``).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse, Response

from apitask_auth.accounts.attempts import count_try, drop_spent, forget_tries
from apitask_auth.accounts.audit import audit
from apitask_auth.accounts.phone_codes import PHONE_CODES, confirm_phone, send_phone_code
from apitask_auth.accounts.security import constant_time_equal, otp_is_valid, token_hash
from apitask_auth.accounts.sessions import issue_session
from apitask_auth.accounts.users import (
    create_user,
    find_user_by_phone,
    find_user_by_phone_change,
    get_user,
    refuse_if_banned,
    retry_if_taken,
    sanitized_user,
    update_user,
    user_body,
)
from apitask_auth.errors import ErrorCode, bad_request, forbidden, unprocessable
from apitask_auth.http.deps import request_aud
from apitask_auth.http.ratelimit import take_sms_allowance
from apitask_auth.http.timing import mark_nothing_sent, mark_outcome, mark_sent
from apitask_auth.storage.tables import now

if TYPE_CHECKING:
    from fastapi import Request
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.accounts.phone_codes import PhoneCodeKind
    from apitask_auth.accounts.users import User
    from apitask_auth.config import Settings
    from apitask_auth.delivery.texter import Channel
    from apitask_auth.http.deps import Service

__all__ = [
    "PHONE_VERIFY_TYPES",
    "SIGNED_UP",
    "check_phone_enabled",
    "register_phone",
    "sms_otp",
    "verify_phone",
]

PHONE_VERIFY_TYPES: dict[str, PhoneCodeKind] = {
    "sms": "confirmation",
    "phone_change": "phone_change",
}
"""POST /verify's phone types, and the kind of code each one checks."""

SIGNED_UP = "signed up by phone"
"""Response-time outcome of ``/otp`` for a number without a confirmed account (a
window of its own: the e-mail sign-up's work differs)."""


def check_phone_enabled(settings: Settings, message: str) -> None:
    """``GOTRUE_EXTERNAL_PHONE_ENABLED``, or GoTrue's 400 ``phone_provider_disabled``."""
    if not settings.external_phone_enabled:
        raise bad_request(ErrorCode.PHONE_PROVIDER_DISABLED, message)


async def _new_phone_user(
    conn: AsyncConnection,
    settings: Settings,
    phone: str,
    aud: str,
    password_hash: str | None,
    data: dict[str, Any],
) -> User:
    """An unconfirmed account for ``phone`` with GoTrue's role for new users."""
    return await create_user(
        conn,
        email=None,
        phone=phone,
        aud=aud,
        role=settings.jwt_default_group_name,
        encrypted_password=password_hash,
        user_metadata=data,
    )


async def _confirm_signup(
    conn: AsyncConnection, request: Request, user: User, channel: Channel
) -> User:
    """``GOTRUE_SMS_AUTOCONFIRM``: the number is the user's at once (audited as a sign-up)."""
    traits = {"provider": "phone", "channel": channel}
    await audit(conn, request, user["id"], user["phone"] or "", "user_signedup", traits)
    return await update_user(
        conn, user["id"], phone_confirmed_at=user["phone_confirmed_at"] or now()
    )


async def register_phone(
    request: Request,
    svc: Service,
    phone: str,
    password_hash: str,
    data: dict[str, Any],
    channel: Channel,
) -> Response:
    """``/signup`` with a phone: a new (or still unconfirmed) account gets a code by
    text, or a session under ``GOTRUE_SMS_AUTOCONFIRM``.

    A confirmed number is answered with a made-up user and nothing is sent
    (GoTrue's ``sanitizeUser``), or 422 ``user_already_exists`` when either
    autoconfirm is on, as GoTrue answers. An existing unconfirmed account keeps
    its password and data: the code proves the number, not the request.
    """
    settings = svc.settings
    aud = request_aud(settings, request)

    async def attempt() -> Response:
        async with svc.engine.begin() as conn:
            await take_sms_allowance(conn, settings, request=request)
            user = await find_user_by_phone(conn, phone, aud)
            if user is not None and user["phone_confirmed_at"] is not None:
                if settings.mailer_autoconfirm or settings.sms_autoconfirm:
                    raise unprocessable(ErrorCode.USER_ALREADY_EXISTS, "User already registered")
                mark_nothing_sent(request)
                body = sanitized_user(user, "phone", phone, aud, data)
                return JSONResponse(body.model_dump())
            if user is None:
                user = await _new_phone_user(conn, settings, phone, aud, password_hash, data)
            if settings.sms_autoconfirm:
                user = await _confirm_signup(conn, request, user, channel)
                session = await issue_session(conn, settings, user, "password")
                await audit(conn, request, user["id"], phone, "login", {"provider": "phone"})
                return JSONResponse(session.model_dump())
            traits = {"provider": "phone"}
            await audit(conn, request, user["id"], phone, "user_confirmation_requested", traits)
            user = await send_phone_code(
                conn, settings, svc.texter, user, phone, "confirmation", channel
            )
            body = await user_body(conn, user)
        mark_sent(request)
        return JSONResponse(body.model_dump())

    # A concurrent sign-up of the same number may commit between our look-up and our
    # insert: run again, and answer as for an existing number.
    return await retry_if_taken(attempt)


async def sms_otp(
    request: Request, svc: Service, phone: str, channel: Channel, data: dict[str, Any]
) -> Response:
    """``/otp`` with a phone (GoTrue's ``SmsOtp``): a code by text; ``{}``.

    A number without a confirmed account is signed up first (no password;
    GoTrue stores a random one nobody is told), which under
    ``GOTRUE_SIGNUP_DISABLED`` is 422 ``signup_disabled``; without autoconfirm
    its code is the sign-up's confirmation, with it the account is confirmed
    and then sent a sign-in code, as GoTrue does.
    """
    settings = svc.settings
    aud = request_aud(settings, request)

    async def attempt() -> Response:
        async with svc.engine.begin() as conn:
            await take_sms_allowance(conn, settings, request=request)
            user = await find_user_by_phone(conn, phone, aud)
            signing_up = user is None or user["phone_confirmed_at"] is None
            if signing_up and settings.disable_signup:
                raise unprocessable(
                    ErrorCode.SIGNUP_DISABLED, "Signups not allowed for this instance"
                )
            if user is None:
                user = await _new_phone_user(conn, settings, phone, aud, None, data)
            if signing_up and settings.sms_autoconfirm:
                user = await _confirm_signup(conn, request, user, channel)
                signing_up = False
            if signing_up:
                action, traits = "user_confirmation_requested", {"provider": "phone"}
            else:
                action, traits = "user_recovery_requested", {"channel": channel}
            await audit(conn, request, user["id"], phone, action, traits)
            await send_phone_code(conn, settings, svc.texter, user, phone, "confirmation", channel)
        if signing_up:
            mark_outcome(request, SIGNED_UP)
        else:
            mark_sent(request)
        return JSONResponse({})

    return await retry_if_taken(attempt)


async def _right_code(
    conn: AsyncConnection,
    settings: Settings,
    owner: User,
    phone: str,
    code: str,
    kind: PhoneCodeKind,
) -> User | None:
    """Count the try (attempts.py), then compare ``code``; the user when it is right.

    A number of ``GOTRUE_SMS_TEST_OTP`` also opens with its fixed code while
    the test codes are valid, as in GoTrue (whether or not one was "sent").
    """
    stored_as = PHONE_CODES[kind]
    user_id = owner["id"]
    limit = settings.security_max_verify_attempts
    tries = await count_try(conn, limit, [user_id], [stored_as.token_type])
    current = await get_user(conn, user_id)
    assert current is not None  # found in this transaction
    right = False
    if tries.allowed(user_id, stored_as.token_type):
        at = now()
        fixed = settings.test_otp(phone, at)
        right = (fixed is not None and constant_time_equal(code, fixed)) or otp_is_valid(
            token_hash(phone, code, settings.jwt_secret),
            current[stored_as.token_type],
            current[stored_as.sent_at],
            settings.sms_code_exp,
            at,
        )
    if not right:
        await drop_spent(conn, tries.spent)
        return None
    await forget_tries(conn, user_id, [stored_as.token_type])
    return current


async def verify_phone(
    request: Request, svc: Service, verify_type: str, phone: str, code: str
) -> Response:
    """POST /verify ``{type: "sms" | "phone_change", phone, token}``: a session.

    ``sms`` looks the user up by number, ``phone_change`` by the number being
    changed to. A wrong, expired or spent code, and an unknown number, are
    GoTrue's 403 ``otp_expired`` "Token has expired or is invalid"; a wrong
    try commits its count first (attempts.py).
    """
    settings = svc.settings
    kind = PHONE_VERIFY_TYPES[verify_type]
    aud = request_aud(settings, request)
    outcome: Response | None = None
    async with svc.engine.begin() as conn:
        find = find_user_by_phone_change if kind == "phone_change" else find_user_by_phone
        owner = await find(conn, phone, aud)
        user = None
        if owner is None:
            mark_nothing_sent(request)
        else:
            user = await _right_code(conn, settings, owner, phone, code, kind)
            if user is None:
                mark_sent(request)  # the count's commit: held as long as the unknown answer
        if user is not None:
            refuse_if_banned(user, 403)
            user = await confirm_phone(conn, request, user, kind)
            session = await issue_session(conn, settings, user, "otp")
            outcome = JSONResponse(session.model_dump())
    if outcome is None:
        raise forbidden(ErrorCode.OTP_EXPIRED, "Token has expired or is invalid")
    return outcome

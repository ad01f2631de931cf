"""Verification: the link clicked from a mail and the OTP or token hash typed in (§3.8).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import Request  # noqa: TC002 - FastAPI reads the annotation at runtime
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import func, or_, select

from apitask_auth.accounts.attempts import count_try, drop_spent, forget_tries
from apitask_auth.accounts.audit import audit
from apitask_auth.accounts.bodies import SingleConfirmationBody
from apitask_auth.accounts.email_change import SINGLE_CONFIRMATION, confirm_email_change
from apitask_auth.accounts.flows import PKCE_TOKEN_PREFIX, latest_flow_state, validate_email
from apitask_auth.accounts.phones import validate_phone
from apitask_auth.accounts.security import token_hash
from apitask_auth.accounts.sessions import issue_session
from apitask_auth.accounts.users import (
    SentAtColumn,
    User,
    clear_one_time_tokens,
    confirm_email,
    find_token,
    find_user_by_email,
    is_confirmed,
    refuse_if_banned,
    update_user,
)
from apitask_auth.delivery.notifications import notification_data, notify
from apitask_auth.errors import APIError, ErrorCode, bad_request, forbidden, unprocessable
from apitask_auth.http.deps import Service, Svc, request_aud
from apitask_auth.http.models import VerifyParams  # noqa: TC001 - read by FastAPI
from apitask_auth.http.redirects import redirect_to
from apitask_auth.http.timing import mark_nothing_sent, mark_sent
from apitask_auth.routes.phone import PHONE_VERIFY_TYPES, verify_phone
from apitask_auth.storage.tables import flow_state, now, users

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.config import Settings

__all__ = ["verify_link", "verify_otp"]


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
_SENT_AT: dict[str, SentAtColumn] = {
    "confirmation_token": "confirmation_sent_at",
    "recovery_token": "recovery_sent_at",
    "email_change_token_current": "email_change_sent_at",
    "email_change_token_new": "email_change_sent_at",
}
_EFFECTIVE = {"confirmation_token": "signup", "recovery_token": "magiclink"}


def _expired(settings: Settings, user: User, token_type: str) -> bool:
    sent_at = user[_SENT_AT[token_type]]
    return sent_at is None or sent_at + settings.otp_exp < now()


def _token_types(settings: Settings, kind: str) -> list[str]:
    """The one_time_tokens types a verification of ``kind`` may match, in GoTrue's order."""
    if kind == "email_change" and not settings.mailer_secure_email_change_enabled:
        return ["email_change_token_new"]
    return _VERIFY_TYPES[kind][0]


async def _find(
    conn: AsyncConnection,
    settings: Settings,
    kind: str,
    stored_tokens: list[str],
    user_ids: list[str] | None = None,
) -> tuple[User, str] | None:
    """The user and token type one of ``stored_tokens`` opens, unless expired."""
    found = await find_token(conn, _token_types(settings, kind), stored_tokens, user_ids)
    if found is None or _expired(settings, found[0], found[1]):
        return None
    return found


def _checked(kind: str, found: tuple[User, str]) -> tuple[User, str, str]:
    """Refuse a banned user; returns the user, the effective type and the token type."""
    user, token_type = found
    refuse_if_banned(user, 403)
    effective = _EFFECTIVE[token_type] if kind == "email" else kind
    return user, effective, token_type


async def _verified_user(
    conn: AsyncConnection, settings: Settings, kind: str, stored_tokens: list[str], message: str
) -> tuple[User, str, str]:
    """Find and check the user a token (the stored value, from a link) belongs to.

    Returns:
        The user, the effective verification type, and the token type that matched.
    """
    found = await _find(conn, settings, kind, stored_tokens)
    if found is None:
        raise forbidden(ErrorCode.OTP_EXPIRED, message)
    return _checked(kind, found)


async def _code_owners(conn: AsyncConnection, kind: str, email: str, aud: str) -> list[str]:
    """The users a code typed in for ``email`` may belong to (whose tries it counts)."""
    if kind != "email_change":
        owner = await find_user_by_email(conn, email, aud)
        return [owner["id"]] if owner is not None else []
    # An e-mail change is confirmed with either address; the hash names the token.
    rows = await conn.execute(
        select(users.c.id)
        .where(or_(func.lower(users.c.email) == email, func.lower(users.c.email_change) == email))
        # One order, so that concurrent tries lock their counts in the same order.
        .order_by(users.c.id)
    )
    return list(rows.scalars())


async def _try_code(
    conn: AsyncConnection, settings: Settings, request: Request, kind: str, email: str, code: str
) -> tuple[User, str] | None:
    """Compare a typed-in code, counting the try first (attempts.py); None when wrong.

    The caller commits after a wrong code: the count, and a code dropped at its
    last try, must stay. That commit is a write an unknown address does not
    make, so its answer is held as long (timing.py), or the time would tell
    which addresses have accounts.
    """
    owners = await _code_owners(conn, kind, email, request_aud(settings, request))
    if not owners:
        mark_nothing_sent(request)
        return None
    token_types = _token_types(settings, kind)
    tries = await count_try(conn, settings.security_max_verify_attempts, owners, token_types)
    hashed = token_hash(email, code, settings.jwt_secret)
    found = await _find(conn, settings, kind, [hashed, PKCE_TOKEN_PREFIX + hashed], owners)
    if found is None:
        await drop_spent(conn, tries.spent)
        mark_sent(request)
        return None
    await forget_tries(conn, found[0]["id"], token_types)
    return found


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
        if not is_confirmed(user):
            user = await confirm_email(conn, user)
    await clear_one_time_tokens(conn, user["id"])
    action = "user_signedup" if kind in {"signup", "invite"} else "login"
    await audit(conn, request, user["id"], user["email"] or "", action)
    return user


def _check_type(kind: str | None, *, phone_types: bool = False) -> str:
    """The verification type, known to the endpoint (the link knows no phone types)."""
    if not kind:
        raise bad_request(ErrorCode.VALIDATION_FAILED, "Verify requires a verification type")
    if kind not in _VERIFY_TYPES and not (phone_types and kind in PHONE_VERIFY_TYPES):
        raise bad_request(ErrorCode.VALIDATION_FAILED, f"Unsupported verification type {kind!r}")
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
        raise bad_request(ErrorCode.VALIDATION_FAILED, "Verify requires a token or a token hash")
    redirect = redirect_to(settings, request)
    is_pkce = token.startswith(PKCE_TOKEN_PREFIX)
    changed: tuple[User, str | None] | None = None
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
                    raise bad_request(
                        ErrorCode.FLOW_STATE_NOT_FOUND,
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
                        "access_token": session.access_token,
                        "expires_at": str(session.expires_at),
                        "expires_in": str(session.expires_in),
                        "refresh_token": session.refresh_token,
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
        data = notification_data(svc, user["email"] or "", user["raw_user_meta_data"], old_email)
        await notify(svc, "email_changed_notification", old_email, data, user=user)


async def verify_otp(params: VerifyParams, svc: Svc, request: Request) -> Response:
    """Verify an OTP (with its address or number) or a token hash; answers with a session."""
    settings = svc.settings
    if bool(params.token) == bool(params.token_hash):
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Verify requires either a token or a token hash"
        )
    if params.token_hash and (params.email or params.phone or params.redirect_to):
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Only the token_hash and type should be provided"
        )
    if params.token and bool(params.email) == bool(params.phone):
        raise bad_request(
            ErrorCode.VALIDATION_FAILED,
            "Only an email address or phone number should be provided on verify",
        )
    kind = _check_type(params.type, phone_types=True)
    if params.phone and params.token:
        if kind not in PHONE_VERIFY_TYPES:
            raise bad_request(ErrorCode.VALIDATION_FAILED, "Invalid sms verification type")
        return await verify_phone(request, svc, kind, validate_phone(params.phone), params.token)
    if kind in PHONE_VERIFY_TYPES:
        if params.token_hash:  # a hash only ever opens a mailed link
            raise bad_request(ErrorCode.VALIDATION_FAILED, "Invalid email verification type")
        # A text's code is hashed with its number: none was sent to an address.
        raise forbidden(ErrorCode.OTP_EXPIRED, "Token has expired or is invalid")
    if params.token_hash:
        message = "Email link is invalid or has expired"
    else:
        try:
            email = validate_email(params.email)
        except APIError:
            raise unprocessable(ErrorCode.VALIDATION_FAILED, "Invalid email format") from None
        message = "Token has expired or is invalid"
    outcome: Response | None = None
    changed: tuple[User, str | None] | None = None
    async with svc.engine.begin() as conn:
        if params.token_hash:
            found = await _find(conn, settings, kind, [params.token_hash])
        else:
            found = await _try_code(conn, settings, request, kind, email, params.token or "")
        # A wrong code falls through: the transaction commits its counted try.
        if found is not None:
            user, effective, token_type = _checked(kind, found)
            old_email = user["email"]
            applied = await _apply_verification(
                conn, settings, request, user, effective, token_type
            )
            if applied is None:
                # GoTrue's answer to the first of two confirmations; its code is a string.
                confirmation = SingleConfirmationBody(msg=SINGLE_CONFIRMATION, code="200")
                outcome = JSONResponse(confirmation.model_dump())
            else:
                session = await issue_session(conn, settings, applied, "otp")
                outcome = JSONResponse(session.model_dump())
                if effective == "email_change":
                    changed = (applied, old_email)
    if outcome is None:
        raise forbidden(ErrorCode.OTP_EXPIRED, message)
    if changed is not None:
        await _notify_email_changed(svc, *changed)
    return outcome

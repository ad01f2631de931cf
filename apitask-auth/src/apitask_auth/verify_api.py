"""Verification: the link clicked from a mail and the OTP or token hash typed in (§3.8)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from .audit import audit
from .db import flow_state, now
from .deps import Service, Svc, request_aud
from .email_change import SINGLE_CONFIRMATION, confirm_email_change
from .errors import APIError
from .flows import latest_flow_state, validate_email
from .models import VerifyParams  # noqa: TC001 - read by FastAPI
from .notifications import notification_data, notify
from .redirects import redirect_to
from .security import token_hash
from .sessions import issue_session
from .users import (
    User,
    clear_one_time_tokens,
    confirm_email,
    find_token,
    find_user_by_email,
    is_confirmed,
    update_user,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from .config import Settings

__all__ = ["router"]

router = APIRouter()


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
        if not is_confirmed(user):
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

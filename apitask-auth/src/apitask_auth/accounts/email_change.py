"""Changing a user's address: the mails to send and the confirmations (§3.9).

With ``GOTRUE_MAILER_SECURE_EMAIL_CHANGE_ENABLED`` (the default) and a current
address, each address gets its own code; the first confirmation only records
itself (GoTrue's "Confirmation link accepted" answer) and the second makes the
change. Without it, only the new address is mailed and one confirmation does it.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apitask_auth.accounts.audit import audit
from apitask_auth.accounts.flows import (
    before_send,
    check_interval,
    deliver_email_change,
    issue_one_time_token,
)
from apitask_auth.accounts.users import (
    TOKEN_COLUMNS,
    User,
    clear_one_time_token,
    clear_one_time_tokens,
    confirm_email,
    providers_metadata,
    set_email_identity,
    update_user,
)
from apitask_auth.delivery.mailer import MailData
from apitask_auth.errors import ErrorCode, forbidden
from apitask_auth.http.redirects import action_link

if TYPE_CHECKING:
    from fastapi import Request
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.config import Settings
    from apitask_auth.delivery.mailer import Mailer

__all__ = ["SINGLE_CONFIRMATION", "confirm_email_change", "send_email_change"]

SINGLE_CONFIRMATION = (
    "Confirmation link accepted. Please proceed to confirm link sent to the other email"
)


def _is_secure(settings: Settings, user: User) -> bool:
    return settings.mailer_secure_email_change_enabled and bool(user["email"])


async def send_email_change(
    conn: AsyncConnection,
    settings: Settings,
    mailer: Mailer,
    request: Request,
    user: User,
    new_email: str,
    redirect: str,
    *,
    pkce: bool = False,
) -> User:
    """Store fresh e-mail-change tokens and mail each address its own code.

    One send as GoTrue counts it: one per-user interval check
    (``email_change_sent_at``) and one unit of the global allowance for both mails.
    """
    check_interval(settings, user, "email_change_sent_at")
    current = user["email"] or ""
    secure = _is_secure(settings, user)
    recipients = [new_email, current] if secure else [new_email]
    await before_send(conn, settings, recipients, request=request)
    user = await update_user(
        conn, user["id"], email_change=new_email, email_change_confirm_status=0
    )
    if not secure:  # a current-address token from an earlier secure change must not linger
        await clear_one_time_token(conn, user["id"], "email_change_token_current")
    mails: list[tuple[str, str, str]] = []
    for token_type, address in (
        ("email_change_token_current", current),
        ("email_change_token_new", new_email),
    ):
        if token_type == "email_change_token_current" and not secure:
            continue
        user, otp, stored = await issue_one_time_token(
            conn,
            settings,
            user,
            token_type,
            address,
            sent_at_column="email_change_sent_at",
            pkce=pkce,
        )
        mails.append((address, otp, stored))
    outgoing: list[tuple[str, MailData]] = []
    for address, otp, stored in mails:
        link = action_link(
            settings,
            request,
            settings.mailer_urlpaths_email_change,
            stored,
            "email_change",
            redirect,
        )
        data = MailData(
            email=current,
            new_email=new_email,
            sending_to=address,
            token=otp,
            token_hash=stored,
            confirmation_url=link,
            redirect_to=redirect,
            data=user["raw_user_meta_data"],
        )
        outgoing.append((address, data))
    await deliver_email_change(conn, mailer, outgoing, user=user)
    return user


async def confirm_email_change(
    conn: AsyncConnection, settings: Settings, request: Request, user: User, token_type: str
) -> User | None:
    """Apply a valid e-mail-change token of ``token_type``.

    Returns:
        None for the first of two confirmations (only that token is spent), else
        the user with the new address in place.
    """
    new_email = user["email_change"]
    if not new_email:
        raise forbidden(ErrorCode.OTP_EXPIRED, "Email link is invalid or has expired")
    if (
        not settings.mailer_autoconfirm
        and _is_secure(settings, user)
        and user["email_change_confirm_status"] == 0
    ):
        await clear_one_time_token(conn, user["id"], token_type)
        await update_user(conn, user["id"], email_change_confirm_status=1)
        return None
    await audit(conn, request, user["id"], user["email"] or "", "user_modified")
    await set_email_identity(conn, user, new_email, verified=True)
    # An anonymous user's first identity: it becomes a permanent e-mail user.
    app_metadata = await providers_metadata(conn, user)
    cleared = dict.fromkeys(
        (TOKEN_COLUMNS["email_change_token_current"], TOKEN_COLUMNS["email_change_token_new"])
    )
    user = await update_user(
        conn,
        user["id"],
        email=new_email,
        email_change=None,
        email_change_confirm_status=0,
        is_anonymous=False,
        raw_app_meta_data=app_metadata,
        **cleared,
    )
    if user["email_confirmed_at"] is None:
        user = await confirm_email(conn, user)
    await clear_one_time_tokens(conn, user["id"])
    return user

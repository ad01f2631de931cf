"""Checks and steps the endpoints share: e-mail and password rules, PKCE,
sending a token mail and the checks before any send (§1.7, §1.8, §2, §3.1).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from apitask.mail import InvalidAddressError, InvalidMessageError, check_address
from apitask_auth.accounts.security import generate_otp, token_hash
from apitask_auth.accounts.users import SentAtColumn, User, create_user, set_one_time_token
from apitask_auth.delivery.mailer import MailData, Template
from apitask_auth.errors import (
    APIError,
    ErrorCode,
    bad_request,
    internal,
    too_many_requests,
    unprocessable,
)
from apitask_auth.http.ratelimit import take_email_allowance
from apitask_auth.http.redirects import action_link
from apitask_auth.storage.rows import FlowState, flow_state_row
from apitask_auth.storage.tables import flow_state, new_id, now

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime, timedelta

    from fastapi import Request
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.config import Settings
    from apitask_auth.delivery.mailer import Mailer

__all__ = [
    "PKCE",
    "PKCE_TOKEN_PREFIX",
    "before_send",
    "check_password_strength",
    "check_interval",
    "check_resend_interval",
    "create_email_user",
    "create_flow_state",
    "deliver",
    "deliver_email_change",
    "issue_one_time_token",
    "latest_flow_state",
    "send_token_mail",
    "validate_email",
    "validate_pkce",
]

_MAX_PASSWORD_BYTES = 72

PKCE_TOKEN_PREFIX = "pkce_"
"""Starts the stored token (and so the link's ``token``) of a PKCE e-mail flow (§2)."""

_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # matched whole (fullmatch)


def validate_email(email: str | None) -> str:
    """GoTrue's syntax check (§1.8); returns the address lowercased.

    Every address that comes in goes through here. The rule is the library's
    :func:`apitask.mail.check_address`, the same one the mail chain applies, so
    an address the service stores is one it can mail; it matches the whole
    string (a trailing newline is refused, as Go's ``$`` does).
    """
    try:
        return check_address(email or "")
    except InvalidAddressError as exc:
        raise bad_request(ErrorCode(exc.error_code), str(exc)) from None


def check_password_strength(settings: Settings, password: str) -> None:
    """Length and required character sets (§3.1 step 3)."""
    # bcrypt reads at most 72 bytes; GoTrue's limit counts bytes too (Go's len).
    if len(password.encode("utf-8", "surrogatepass")) > _MAX_PASSWORD_BYTES:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Password cannot be longer than 72 characters"
        )
    reasons: list[str] = []
    messages: list[str] = []
    minimum = max(settings.password_min_length, 6)
    if len(password) < minimum:
        reasons.append("length")
        messages.append(f"Password should be at least {minimum} characters.")
    sets = [group for group in settings.password_required_characters.split(":") if group]
    if any(not any(char in group for char in password) for group in sets):
        reasons.append("characters")
        messages.append(
            "Password should contain at least one character of each: " + ", ".join(sets) + "."
        )
    if reasons:
        raise unprocessable(
            ErrorCode.WEAK_PASSWORD,
            " ".join(messages),
            extra={"weak_password": {"reasons": reasons}},
        )


@dataclass(frozen=True, slots=True)
class PKCE:
    """A validated ``code_challenge`` and its method (lowercase)."""

    challenge: str
    method: str


def validate_pkce(challenge: str | None, method: str | None) -> PKCE | None:
    """Both or neither; a 43-128 character challenge; ``s256`` or ``plain``."""
    if not challenge and not method:
        return None
    if not challenge or not method:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED,
            "PKCE flow requires code_challenge_method and code_challenge",
        )
    if not _CHALLENGE.fullmatch(challenge):
        raise bad_request(
            ErrorCode.VALIDATION_FAILED,
            "code challenge has to be between 43 and 128 characters and contain only "
            "alphanumeric characters, hyphens, periods, underscores and tildes",
        )
    if method.lower() not in {"s256", "plain"}:
        # GoTrue fails later with a 500; a 400 is the honest answer.
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, f"code challenge method {method!r} not supported"
        )
    return PKCE(challenge, method.lower())


async def create_email_user(
    conn: AsyncConnection,
    settings: Settings,
    *,
    email: str,
    aud: str,
    encrypted_password: str | None,
    user_metadata: dict[str, Any],
    role: str | None = None,
    app_metadata: dict[str, Any] | None = None,
    user_id: str | None = None,
) -> User:
    """Create an unconfirmed user with an e-mail address: :func:`create_user`
    with GoTrue's role for new users (``GOTRUE_JWT_DEFAULT_GROUP_NAME``) unless
    an admin names one.

    Raises:
        AddressTakenError: another transaction holds an account with this address.
    """
    return await create_user(
        conn,
        email=email,
        aud=aud,
        role=role or settings.jwt_default_group_name,
        encrypted_password=encrypted_password,
        user_metadata=user_metadata,
        app_metadata=app_metadata,
        user_id=user_id,
    )


async def create_flow_state(
    conn: AsyncConnection, user_id: str, pkce: PKCE, method: str, provider_type: str
) -> None:
    """Record a PKCE flow for ``user_id`` (authentication method ``method``)."""
    at = now()
    await conn.execute(
        flow_state.insert().values(
            id=new_id(),
            user_id=user_id,
            auth_code=new_id(),
            code_challenge=pkce.challenge,
            code_challenge_method=pkce.method,
            provider_type=provider_type,
            authentication_method=method,
            created_at=at,
            updated_at=at,
        )
    )


async def latest_flow_state(conn: AsyncConnection, user_id: str, method: str) -> FlowState | None:
    """The user's newest flow state for ``method``, if any."""
    row = (
        await conn.execute(
            select(flow_state)
            .where(flow_state.c.user_id == user_id)
            .where(flow_state.c.authentication_method == method)
            .order_by(flow_state.c.created_at.desc())
            .limit(1)
        )
    ).first()
    return flow_state_row(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class _TokenMail:
    """How one kind of token mail is stored and linked (§2 "Storage", "Links")."""

    template: Template
    link_type: str
    token_type: str
    sent_at: SentAtColumn
    url_path: str
    per_user_interval: bool = True


def check_interval(
    settings: Settings,
    user: User,
    sent_at_column: SentAtColumn,
    *,
    sms: bool = False,
) -> None:
    """GoTrue's per-user minimum interval between mails (``GOTRUE_SMTP_MAX_FREQUENCY``),
    or between texts with ``sms`` (``GOTRUE_SMS_MAX_FREQUENCY``, 429
    ``over_sms_send_rate_limit``)."""
    check_resend_interval(
        user[sent_at_column],
        settings.sms_interval if sms else settings.max_frequency,
        ErrorCode.OVER_SMS_SEND_RATE_LIMIT if sms else ErrorCode.OVER_EMAIL_SEND_RATE_LIMIT,
    )


def check_resend_interval(sent_at: datetime | None, interval: timedelta, code: ErrorCode) -> None:
    """GoTrue's "too soon" refusal: a 429 ``code`` naming the whole seconds left
    (rounded up) while ``sent_at + interval`` is still ahead; nothing before a first send."""
    if sent_at is None:
        return
    remaining = (sent_at + interval - now()).total_seconds()
    if remaining > 0:
        raise too_many_requests(
            code,
            "For security purposes, you can only request this after "
            f"{math.ceil(remaining)} seconds.",
        )


def _token_mail(settings: Settings, template: Template) -> _TokenMail:
    """How the ``template`` mail stores its token and builds its link (§2, §1.7)."""
    paths = {
        "confirmation": settings.mailer_urlpaths_confirmation,
        "invite": settings.mailer_urlpaths_invite,
        "recovery": settings.mailer_urlpaths_recovery,
        "magic_link": settings.mailer_urlpaths_recovery,  # GoTrue's MagicLinkMail does so
        "reauthentication": "",  # a code only, no link
    }
    columns: dict[Template, tuple[str, str, SentAtColumn]] = {
        "confirmation": ("signup", "confirmation_token", "confirmation_sent_at"),
        "invite": ("invite", "confirmation_token", "confirmation_sent_at"),
        "recovery": ("recovery", "recovery_token", "recovery_sent_at"),
        "magic_link": ("magiclink", "recovery_token", "recovery_sent_at"),
        "reauthentication": ("", "reauthentication_token", "reauthentication_sent_at"),
    }
    link_type, token_type, sent_at = columns[template]
    # Invites have no per-user interval (§1.7).
    return _TokenMail(
        template, link_type, token_type, sent_at, paths[template], template != "invite"
    )


async def issue_one_time_token(
    conn: AsyncConnection,
    settings: Settings,
    user: User,
    token_type: str,
    address: str,
    *,
    sent_at_column: SentAtColumn,
    pkce: bool = False,
    otp: str | None = None,
) -> tuple[User, str, str]:
    """Store the hash of a fresh OTP (or of ``otp``) as ``user``'s ``token_type``
    token for ``address`` (an address, or a number for a texted code).

    Returns:
        The user as now stored, the OTP (for the mail) and the stored hash (for
        the link). A PKCE flow's hash carries :data:`PKCE_TOKEN_PREFIX`, by which
        verification tells the flow apart (§2).
    """
    if otp is None:
        otp = generate_otp(settings.otp_length)
    stored = (PKCE_TOKEN_PREFIX if pkce else "") + token_hash(address, otp, settings.jwt_secret)
    user = await set_one_time_token(
        conn, user, token_type, stored, address, sent_at_column=sent_at_column
    )
    return user, otp, stored


async def send_token_mail(
    conn: AsyncConnection,
    settings: Settings,
    mailer: Mailer,
    request: Request,
    user: User,
    template: Template,
    redirect: str,
    *,
    pkce: bool = False,
) -> User:
    """Store a fresh OTP's hash for ``user`` and send the ``template`` mail that carries it.

    Runs in the caller's transaction: a failure to hand the mail over (inline
    delivery) rolls the token back with everything else.
    """
    kind = _token_mail(settings, template)
    if kind.per_user_interval:
        check_interval(settings, user, kind.sent_at)
    email = user["email"]
    assert email is not None  # mail goes to accounts found or made by their address
    await before_send(conn, settings, [email], request=request)
    user, otp, stored = await issue_one_time_token(
        conn, settings, user, kind.token_type, email, sent_at_column=kind.sent_at, pkce=pkce
    )
    link = ""
    if kind.link_type:
        link = action_link(settings, request, kind.url_path, stored, kind.link_type, redirect)
    data = MailData(
        email=email,
        token=otp,
        token_hash=stored,
        confirmation_url=link,
        redirect_to=redirect,
        data=user["raw_user_meta_data"],
    )
    await deliver(conn, mailer, kind.template, email, data, user=user)
    return user


def _without_label(address: str) -> str:
    local, at, domain = address.rpartition("@")
    return local.split("+", 1)[0] + at + domain if at else address


async def before_send(
    conn: AsyncConnection,
    settings: Settings,
    recipients: list[str],
    *,
    request: Request | None = None,
) -> None:
    """What GoTrue checks before every send (``sendEmail``), in its order.

    The recipients must be in ``GOTRUE_EXTERNAL_EMAIL_AUTHORIZED_ADDRESSES`` when
    it is set (a ``+label`` is ignored); then the send takes one unit of the
    global e-mail allowance, however many recipients it has. A refusal of the
    allowance is counted under ``request``'s path; notifications, whose
    refusal is logged and not answered, pass none.
    """
    allowed = {address.lower() for address in settings.external_email_authorized_addresses}
    for address in recipients if allowed else []:
        if _without_label(address).lower() not in allowed:
            raise bad_request(
                ErrorCode.EMAIL_ADDRESS_NOT_AUTHORIZED,
                f'Email address "{address}" cannot be used as it is not authorized',
            )
    await take_email_allowance(conn, settings, request=request)


async def deliver(
    conn: AsyncConnection,
    mailer: Mailer,
    template: Template,
    to: str,
    data: MailData,
    *,
    user: User,
) -> None:
    """Hand one mail about ``user`` to the mailer; a failure is GoTrue's 500 "Error
    sending ... email"."""
    with _send_errors(template):
        await mailer.send(template, to, data, connection=conn, user=user)


async def deliver_email_change(
    conn: AsyncConnection, mailer: Mailer, mails: list[tuple[str, MailData]], *, user: User
) -> None:
    """Hand the mails of one e-mail change to the mailer, as :func:`deliver` does one."""
    with _send_errors("email_change"):
        await mailer.send_email_change(mails, connection=conn, user=user)


@contextlib.contextmanager
def _send_errors(template: Template) -> Iterator[None]:
    """GoTrue's answers to a failed send: its own API errors (a hook's answer), the
    validating client's refusals, else 500 "Error sending ... email"."""
    try:
        yield
    except APIError:
        raise
    except InvalidAddressError as exc:  # refused by the validating client (§4.6)
        raise bad_request(ErrorCode(exc.error_code), str(exc)) from exc
    except InvalidMessageError as exc:
        # The rendered mail is unsafe to send: user data brought a line break
        # into the subject. The library refuses rather than send a different
        # mail; nothing is written (the caller's transaction rolls back).
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, f"Error sending {_name(template)} email: {exc}"
        ) from exc
    except Exception as exc:
        raise internal(f"Error sending {_name(template)} email").with_internal_error(exc) from exc


def _name(template: Template) -> str:
    return template.removesuffix("_notification").replace("_", " ")

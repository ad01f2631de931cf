"""The phone flows' codes: texting one, and what a right one does (§11).

A code is stored as GoTrue stores it, by :func:`~.flows.issue_one_time_token` as a
mailed one is: its hash (:func:`~.security.token_hash` of the number and the
code) on the user's column and as the user's one ``one_time_tokens`` row of
that type, ``relates_to`` the number. A sign-up
or sign-in code is a ``confirmation_token`` (``confirmation_sent_at``), a
phone change's is a ``phone_change_token`` (``phone_change_sent_at``),
exactly GoTrue's columns. Its tries are counted like a mailed code's
(attempts.py).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from apitask_auth.accounts.audit import audit
from apitask_auth.accounts.flows import check_interval, issue_one_time_token
from apitask_auth.accounts.security import generate_otp
from apitask_auth.accounts.users import (
    User,
    clear_one_time_tokens,
    providers_metadata,
    set_phone_identity,
    update_user,
)
from apitask_auth.errors import APIError, ErrorCode, unprocessable
from apitask_auth.storage.tables import now

if TYPE_CHECKING:
    from fastapi import Request
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.accounts.users import SentAtColumn
    from apitask_auth.config import Settings
    from apitask_auth.delivery.texter import Channel, Texter

__all__ = ["PHONE_CODES", "PhoneCode", "PhoneCodeKind", "confirm_phone", "send_phone_code"]

PhoneCodeKind = Literal["confirmation", "phone_change", "reauthentication"]
"""GoTrue's ``otpType`` of a text: a sign-up or sign-in code, a phone change's, or
the nonce of ``/reauthenticate`` for a user with no address."""


@dataclass(frozen=True, slots=True)
class PhoneCode:
    """Where one kind of phone code is stored: its ``one_time_tokens`` type, which
    is also the name of the users column that holds it, and its sent-at column."""

    token_type: Literal["confirmation_token", "phone_change_token", "reauthentication_token"]
    sent_at: SentAtColumn


PHONE_CODES: dict[PhoneCodeKind, PhoneCode] = {
    "confirmation": PhoneCode("confirmation_token", "confirmation_sent_at"),
    "phone_change": PhoneCode("phone_change_token", "phone_change_sent_at"),
    "reauthentication": PhoneCode("reauthentication_token", "reauthentication_sent_at"),
}


async def send_phone_code(
    conn: AsyncConnection,
    settings: Settings,
    texter: Texter,
    user: User,
    phone: str,
    kind: PhoneCodeKind,
    channel: Channel = "sms",
) -> User:
    """Store a fresh code's hash for ``user`` and text the code to ``phone`` (GoTrue's
    ``sendPhoneConfirmation``).

    The per-user interval comes first (``GOTRUE_SMS_MAX_FREQUENCY``, 429), for
    test numbers too, as in GoTrue. A number of ``GOTRUE_SMS_TEST_OTP`` gets its
    fixed code and no text. A phone change records the new number as
    ``phone_change``. Runs in the caller's transaction: a texter that fails
    (inline delivery) rolls the code back with everything else, and the answer
    is GoTrue's 422 ``sms_send_failed``.
    """
    code = PHONE_CODES[kind]
    check_interval(settings, user, code.sent_at, sms=True)
    fixed = settings.test_otp(phone, now())
    otp = fixed if fixed is not None else generate_otp(settings.sms_code_length)
    if kind == "phone_change":
        user = await update_user(conn, user["id"], phone_change=phone)
    user, _, _ = await issue_one_time_token(
        conn, settings, user, code.token_type, phone, sent_at_column=code.sent_at, otp=otp
    )
    if fixed is None:
        try:
            await texter.send(
                phone, otp, user=user, channel=channel, purpose="otp", connection=conn
            )
        except APIError:
            raise
        except Exception as exc:
            raise unprocessable(
                ErrorCode.SMS_SEND_FAILED, f"Error sending {kind} OTP to provider: {exc}"
            ).with_internal_error(exc) from exc
    return user


async def confirm_phone(
    conn: AsyncConnection, request: Request, user: User, kind: PhoneCodeKind
) -> User:
    """Apply a right code: confirm the number (``sms``) or switch to the new one.

    GoTrue's ``smsVerify``: a sign-up is audited ``user_signedup``; a change
    ``user_modified``, the ``phone`` identity pointed at the new number (made,
    verified, if the user had none); either way the number is confirmed now,
    every one-time token of the user is spent, an anonymous user becomes a
    permanent one and ``app_metadata.providers`` is read again from the
    identities.
    """
    at = now()
    if kind == "confirmation":
        await audit(conn, request, user["id"], user["phone"] or "", "user_signedup")
        user = await update_user(conn, user["id"], confirmation_token=None, phone_confirmed_at=at)
    else:
        new_phone = user["phone_change"] or ""
        await audit(conn, request, user["id"], user["phone"] or "", "user_modified")
        await set_phone_identity(conn, user, new_phone, verified=True)
        user = await update_user(
            conn,
            user["id"],
            phone=new_phone,
            phone_change=None,
            phone_change_token=None,
            phone_confirmed_at=at,
        )
    await clear_one_time_tokens(conn, user["id"])
    app_metadata = await providers_metadata(conn, user)
    return await update_user(conn, user["id"], is_anonymous=False, raw_app_meta_data=app_metadata)

"""MFA's rules (§3.18): enrol a factor, challenge it, verify it, unenrol it.

As GoTrue's ``internal/api/mfa.go``, with one addition: a verify is a code
guess, so its tries are counted per factor with the service's attempt limit
(``GOTRUE_SECURITY_MAX_VERIFY_ATTEMPTS``, :mod:`.attempts`). A try past the
limit is not compared and answers as a wrong code; the count lapses once no
try has come for ``GOTRUE_MFA_CHALLENGE_EXPIRY_DURATION``, and a right code ends
it. When a wrong try spends the last one, the factor's challenges are dropped
(a phone code dies with its challenge).

Handlers (:mod:`apitask_auth.routes.mfa`) parse the request and open the
transaction; these functions take the open connection.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update

from apitask_auth.accounts.attempts import CountedRefusal, Tries, count_try, forget_tries
from apitask_auth.accounts.factors import SIGN_IN_METHOD, list_factors
from apitask_auth.accounts.flows import check_resend_interval
from apitask_auth.accounts.security import constant_time_equal, generate_otp, token_hash
from apitask_auth.accounts.sessions import (
    add_method,
    drop_sessions_below_aal2,
    lower_sessions_of_factor,
    rotate_refresh_token,
)
from apitask_auth.accounts.totp import new_secret, provisioning_uri, qr_code_svg, totp_matches
from apitask_auth.errors import (
    ErrorCode,
    bad_request,
    forbidden,
    unauthorized,
    unprocessable,
)
from apitask_auth.storage.tables import (
    mfa_challenges,
    mfa_factors,
    new_id,
    now,
    sessions,
    verify_attempts,
)

if TYPE_CHECKING:
    from sqlalchemy import Row
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.config import Settings
    from apitask_auth.delivery.texter import Channel, Texter
    from apitask_auth.storage.rows import Factor, Session, User

__all__ = [
    "Enrolled",
    "challenge_factor",
    "check_enrolment",
    "check_type_enabled",
    "enroll_phone",
    "enroll_totp",
    "remove_factor",
    "require_aal2_with_mfa",
    "unenroll",
    "valid_phone",
    "verify_factor",
]

_E164 = re.compile(r"[1-9][0-9]{1,14}")
_CHANNELS: dict[str, Channel] = {"sms": "sms", "whatsapp": "whatsapp"}
_WRONG_CODE = {"totp": "Invalid TOTP code entered", "phone": "Invalid MFA Phone code entered"}
_TYPE_LABELS = {"totp": "TOTP", "phone": "Phone"}
# An unverified factor never challenged is dropped after this (GoTrue's
# GOTRUE_MFA_FACTOR_EXPIRY_DURATION default, and its floor: not a setting here).
_UNUSED_FACTOR_LIFETIME = timedelta(seconds=300)


def _tries_key(factor_id: str) -> str:
    # verify_attempts.token_type: one count per factor, beside the mailed codes' counts.
    return f"mfa:{factor_id}"


def valid_phone(phone: str) -> str | None:
    """GoTrue's validatePhone: the number without ``+`` and spaces, if E.164; else None."""
    digits = phone.strip().removeprefix("+").replace(" ", "")
    return digits if _E164.fullmatch(digits) else None


def check_type_enabled(settings: Settings, factor_type: str, step: str) -> None:
    """422 when ``step`` ("enroll" or "verify") is off for ``factor_type`` (a challenge
    is a verify step, as in GoTrue)."""
    enabled = getattr(settings, f"mfa_{factor_type}_{step}_enabled")
    if enabled:
        return
    label = _TYPE_LABELS[factor_type]
    if step == "enroll":
        code = getattr(ErrorCode, f"MFA_{factor_type.upper()}_ENROLL_NOT_ENABLED")
        raise unprocessable(code, f"MFA enroll is disabled for {label}")
    code = getattr(ErrorCode, f"MFA_{factor_type.upper()}_VERIFY_NOT_ENABLED")
    raise unprocessable(code, f"MFA verification is disabled for {label}")


async def check_enrolment(
    conn: AsyncConnection, settings: Settings, user_id: str, name: str, session: Session
) -> None:
    """GoTrue's validateFactors: unverified factors never challenged expire after
    five minutes; then the name must be free, the counts under their limits, and a
    user with a verified factor must be at aal2 to add another."""
    await conn.execute(
        delete(mfa_factors)
        .where(mfa_factors.c.user_id == user_id)
        .where(mfa_factors.c.status != "verified")
        .where(mfa_factors.c.last_challenged_at.is_(None))
        .where(mfa_factors.c.created_at < now() - _UNUSED_FACTOR_LIFETIME)
    )
    factors = await list_factors(conn, user_id)
    # GoTrue compares the names as sent, "" included: two unnamed factors conflict.
    if any(factor["friendly_name"] == name for factor in factors):
        raise unprocessable(
            ErrorCode.MFA_FACTOR_NAME_CONFLICT,
            f'A factor with the friendly name "{name}" for this user already exists',
        )
    verified = sum(factor["status"] == "verified" for factor in factors)
    if len(factors) >= settings.mfa_max_enrolled_factors or (
        verified >= settings.mfa_max_verified_factors
    ):
        raise unprocessable(
            ErrorCode.TOO_MANY_ENROLLED_MFA_FACTORS,
            "Maximum number of verified factors reached, unenroll to continue",
        )
    if verified and session["aal"] != "aal2":
        raise forbidden(ErrorCode.INSUFFICIENT_AAL, "AAL2 required to enroll a new factor")


async def _insert_factor(
    conn: AsyncConnection, user_id: str, factor_type: str, name: str, **values: Any
) -> Factor:
    at = now()
    row = {
        "id": new_id(),
        "user_id": user_id,
        "friendly_name": name,
        "factor_type": factor_type,
        "status": "unverified",
        "secret": "",
        "phone": None,
        "last_challenged_at": None,
        "created_at": at,
        "updated_at": at,
        **values,
    }
    await conn.execute(mfa_factors.insert().values(**row))
    return cast("Factor", row)


@dataclass(frozen=True, slots=True)
class Enrolled:
    """A new factor, and what its enrolment answer carries besides."""

    factor: Factor
    totp: dict[str, str] | None = None
    phone: str = ""


async def enroll_totp(
    conn: AsyncConnection,
    settings: Settings,
    user: User,
    session: Session,
    name: str,
    issuer: str,
) -> Enrolled:
    """A new unverified TOTP factor: its secret, URI and QR code (shown once)."""
    issuer = issuer or urlsplit(settings.site_url).netloc
    await check_enrolment(conn, settings, user["id"], name, session)
    secret = new_secret()
    uri = provisioning_uri(secret, user["email"] or "", issuer)
    try:
        qr_code = qr_code_svg(uri)
    except ValueError:  # segno's DataOverflowError: more than a QR code holds
        # GoTrue answers 500 "Error generating QR Code"; it is the issuer sent.
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Error generating QR Code: issuer is too long"
        ) from None
    factor = await _insert_factor(conn, user["id"], "totp", name, secret=secret)
    totp = {"qr_code": qr_code, "secret": secret, "uri": uri}
    return Enrolled(factor, totp=totp)


async def enroll_phone(
    conn: AsyncConnection,
    settings: Settings,
    user: User,
    session: Session,
    name: str,
    phone: str,
) -> Enrolled:
    """A new unverified phone factor for ``phone``; an unverified one for the same
    number is replaced, a verified one refuses (GoTrue's order)."""
    if not phone:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Phone number required to enroll Phone factor"
        )
    number = valid_phone(phone)
    if number is None:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Invalid phone number format (E.164 required)"
        )
    same = [
        factor
        for factor in await list_factors(conn, user["id"])
        if factor["factor_type"] == "phone" and factor["phone"] == number
    ]
    if any(factor["status"] == "verified" for factor in same):
        raise unprocessable(
            ErrorCode.MFA_VERIFIED_FACTOR_EXISTS,
            "A verified phone factor already exists, unenroll the existing factor to continue",
        )
    if same:
        await conn.execute(delete(mfa_factors).where(mfa_factors.c.id.in_([f["id"] for f in same])))
    await check_enrolment(conn, settings, user["id"], name, session)
    factor = await _insert_factor(conn, user["id"], "phone", name, phone=number)
    return Enrolled(factor, phone=phone)


async def challenge_factor(
    conn: AsyncConnection,
    settings: Settings,
    texter: Texter,
    user: User,
    factor: Factor,
    ip_address: str,
    channel: str,
) -> tuple[str, int]:
    """A new challenge of ``factor``: (its id, when it expires in Unix seconds).

    A phone factor gets a fresh code by text, at most one per
    ``GOTRUE_MFA_PHONE_MAX_FREQUENCY``; only the code's keyed hash is stored.
    """
    at = now()
    challenge_id = new_id()
    code_hash = ""
    if factor["factor_type"] == "phone":
        if (channel or "sms") not in _CHANNELS:
            raise bad_request(
                ErrorCode.VALIDATION_FAILED,
                "Invalid channel, supported values are 'sms' or 'whatsapp'",
            )
        check_resend_interval(
            factor["last_challenged_at"],
            settings.mfa_phone_interval,
            ErrorCode.OVER_SMS_SEND_RATE_LIMIT,
        )
        code = generate_otp(settings.mfa_phone_code_length)
        code_hash = token_hash(challenge_id, code, settings.jwt_secret)
    await conn.execute(
        mfa_challenges.insert().values(
            id=challenge_id,
            factor_id=factor["id"],
            ip_address=ip_address,
            otp_code=code_hash,
            verified_at=None,
            created_at=at,
        )
    )
    await conn.execute(
        update(mfa_factors).where(mfa_factors.c.id == factor["id"]).values(last_challenged_at=at)
    )
    if factor["factor_type"] == "phone":
        # In the challenge's transaction: the outbox mode writes its job here.
        await texter.send(
            factor["phone"] or "",  # a phone factor always has its number
            code,
            user=user,
            channel=_CHANNELS[channel or "sms"],
            purpose="mfa",
            connection=conn,
        )
    return challenge_id, int((at + settings.mfa_challenge_expiry).timestamp())


async def _valid_challenge(
    conn: AsyncConnection, settings: Settings, factor: Factor, challenge_id: str, ip: str
) -> Row[Any]:
    """GoTrue's validateChallenge. An expired challenge is deleted and refused; the
    deletion commits with the refusal (:class:`CountedRefusal`)."""
    challenge = (
        await conn.execute(
            select(mfa_challenges)
            .where(mfa_challenges.c.id == challenge_id)
            .where(mfa_challenges.c.factor_id == factor["id"])
        )
    ).first()
    if challenge is None:
        raise unprocessable(
            ErrorCode.MFA_FACTOR_NOT_FOUND, "MFA factor with the provided challenge ID not found"
        )
    if challenge.verified_at is not None or challenge.ip_address != ip:
        raise unprocessable(
            ErrorCode.MFA_IP_ADDRESS_MISMATCH, "Challenge and verify IP addresses mismatch."
        )
    if challenge.created_at + settings.mfa_challenge_expiry < now():
        await conn.execute(delete(mfa_challenges).where(mfa_challenges.c.id == challenge.id))
        raise CountedRefusal(
            422,
            ErrorCode.MFA_CHALLENGE_EXPIRED,
            f"MFA challenge {challenge.id} has expired, verify against another challenge "
            "or create a new challenge.",
        )
    return challenge


async def _count(conn: AsyncConnection, settings: Settings, user_id: str, key: str) -> Tries:
    """Count this try. A count idle for a challenge's lifetime lapses first, so a
    factor is never locked for good."""
    await conn.execute(
        delete(verify_attempts)
        .where(verify_attempts.c.user_id == user_id)
        .where(verify_attempts.c.token_type == key)
        .where(verify_attempts.c.updated_at < now() - settings.mfa_challenge_expiry)
    )
    return await count_try(conn, settings.security_max_verify_attempts, [user_id], [key])


async def verify_factor(
    conn: AsyncConnection,
    settings: Settings,
    user: User,
    session: Session,
    factor: Factor,
    challenge_id: str,
    code: str,
    ip_address: str,
) -> tuple[Session, str]:
    """Check ``code`` against the challenge; on success the factor is verified and
    the session raised to aal2. Returns the session and its new refresh token.

    Raises:
        CountedRefusal: a wrong code (or a try past the limit), an expired
            challenge: the caller commits, then answers.
        APIError: an unknown or spent challenge.
    """
    challenge = await _valid_challenge(conn, settings, factor, challenge_id, ip_address)
    key = _tries_key(factor["id"])
    tries = await _count(conn, settings, user["id"], key)
    allowed = tries.allowed(user["id"], key)
    if factor["factor_type"] == "totp":
        right = allowed and totp_matches(factor["secret"], code)
    else:
        expected = token_hash(challenge.id, code, settings.jwt_secret)
        right = allowed and constant_time_equal(expected, challenge.otp_code)
    if not right:
        if tries.spent:
            # That was the last try: no challenge of the factor stays usable.
            await conn.execute(
                delete(mfa_challenges).where(mfa_challenges.c.factor_id == factor["id"])
            )
        wrong = _WRONG_CODE[factor["factor_type"]]
        raise CountedRefusal(422, ErrorCode.MFA_VERIFICATION_FAILED, wrong)
    await forget_tries(conn, user["id"], [key])
    at = now()
    # Spent: ``verified_at`` refuses it again; its code's hash has no use left.
    await conn.execute(
        update(mfa_challenges)
        .where(mfa_challenges.c.id == challenge.id)
        .values(verified_at=at, otp_code="")
    )
    if factor["status"] != "verified":
        await conn.execute(
            update(mfa_factors)
            .where(mfa_factors.c.id == factor["id"])
            .values(status="verified", updated_at=at)
        )
    raised = await add_method(conn, session, SIGN_IN_METHOD[factor["factor_type"]], factor["id"])
    token = await rotate_refresh_token(conn, user["id"], session["id"])
    await drop_sessions_below_aal2(conn, user["id"])
    # The user's other unverified factors of this type were attempts at this one.
    await conn.execute(
        delete(mfa_factors)
        .where(mfa_factors.c.user_id == user["id"])
        .where(mfa_factors.c.status == "unverified")
        .where(mfa_factors.c.factor_type == factor["factor_type"])
    )
    return raised, token


async def unenroll(conn: AsyncConnection, session: Session, factor: Factor) -> None:
    """Remove ``factor``; a verified one needs an aal2 session. Sessions it raised
    go back to aal1."""
    if factor["status"] == "verified" and session["aal"] != "aal2":
        raise unprocessable(ErrorCode.INSUFFICIENT_AAL, "AAL2 required to unenroll verified factor")
    await remove_factor(conn, factor)


async def remove_factor(conn: AsyncConnection, factor: Factor) -> None:
    """Delete the factor (its challenges and try count with it) and lower its sessions."""
    await conn.execute(delete(mfa_factors).where(mfa_factors.c.id == factor["id"]))
    await forget_tries(conn, factor["user_id"], [_tries_key(factor["id"])])
    method = SIGN_IN_METHOD[factor["factor_type"]]
    await lower_sessions_of_factor(conn, factor["user_id"], factor["id"], method)


async def require_aal2_with_mfa(
    conn: AsyncConnection, user_id: str, session_id: str | None
) -> None:
    """PUT /user's guard: a user with a verified factor changes the address or the
    password only from an aal2 session (GoTrue's UserUpdate)."""
    verified = (
        await conn.execute(
            select(mfa_factors.c.id)
            .where(mfa_factors.c.user_id == user_id)
            .where(mfa_factors.c.status == "verified")
            .limit(1)
        )
    ).first()
    if verified is None:
        return
    aal = (
        await conn.execute(select(sessions.c.aal).where(sessions.c.id == session_id))
    ).scalar_one_or_none()
    if aal != "aal2":
        raise unauthorized(
            ErrorCode.INSUFFICIENT_AAL,
            "AAL2 session is required to update email or password when MFA is enabled.",
        )

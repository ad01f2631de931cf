"""Secrets: OTPs and token hashes (§2), passwords, refresh tokens, PKCE, JWTs (§7).

Every comparison of a secret is constant-time (``hmac.compare_digest``), and
bcrypt runs in a thread so it never stalls the event loop.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import string
from typing import TYPE_CHECKING

import bcrypt

if TYPE_CHECKING:
    from datetime import datetime, timedelta

__all__ = [
    "check_password",
    "constant_time_equal",
    "generate_otp",
    "hash_password",
    "new_refresh_token",
    "otp_is_valid",
    "pkce_matches",
    "random_password",
    "token_hash",
]

_REFRESH_ALPHABET = string.ascii_lowercase + "234567"  # lowercase base32


def generate_otp(length: int) -> str:
    """A uniformly random number in [0, 10**length), zero-padded to ``length`` digits."""
    return str(secrets.randbelow(10**length)).zfill(length)


def token_hash(email: str, otp: str, key: str) -> str:
    """The stored form of a mailed code: lowercase hex HMAC-SHA-224 of the address
    followed by the code, keyed with ``key`` (``GOTRUE_JWT_SECRET``).

    GoTrue stores the plain SHA-224 of the same text: 56 hex characters like these,
    but anyone who knows the address can compute them for every code, and a
    ``token_hash`` (POST /verify, the link's ``token``) names no user, so its tries
    cannot be counted (attempts.py): a million of them would find the code. Keyed,
    the value cannot be computed without the secret.
    """
    return hmac.new(key.encode(), (email + otp).encode(), hashlib.sha224).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two secrets without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())


def otp_is_valid(
    expected: str, stored: str | None, sent_at: datetime | None, lifetime: timedelta, at: datetime
) -> bool:
    """GoTrue's ``isOtpValid``: a code is ``stored``, was sent no more than ``lifetime``
    before ``at``, and ``expected`` (the hash of the code tried) is it."""
    if not stored or sent_at is None or sent_at + lifetime < at:
        return False
    return constant_time_equal(stored, expected)


# GoTrue hashes with Go's bcrypt.DefaultCost.
BCRYPT_COST = 10


def _bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()


def _bcrypt_check(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:  # not a bcrypt hash (e.g. an imported password_hash we cannot read)
        return False


async def hash_password(password: str) -> str:
    """bcrypt ``password`` in a worker thread."""
    return await asyncio.to_thread(_bcrypt_hash, password)


# A real hash of a random password: checking against it costs what a real check
# costs, so "no such user" and "wrong password" take the same time.
_DUMMY_HASH = _bcrypt_hash(secrets.token_urlsafe(16))


async def check_password(password: str, hashed: str | None) -> bool:
    """Whether ``password`` matches ``hashed`` (always spends one bcrypt check)."""
    ok = await asyncio.to_thread(_bcrypt_check, password, hashed or _DUMMY_HASH)
    return ok and hashed is not None


def random_password(length: int) -> str:
    """A random password for users created without one (invites, admin, magic link)."""
    return secrets.token_urlsafe(length)[:length]


def new_refresh_token() -> str:
    """A 12-character lowercase base32 refresh token (GoTrue's legacy format)."""
    return "".join(secrets.choice(_REFRESH_ALPHABET) for _ in range(12))


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """Check a PKCE code verifier against the stored challenge (``s256`` or ``plain``)."""
    if method == "s256":
        digest = hashlib.sha256(verifier.encode()).digest()
        verifier = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return constant_time_equal(verifier, challenge)

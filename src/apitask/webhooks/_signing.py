"""Standard Webhooks signatures: pure functions, no I/O.

A receiver checks that a POST came from us and was not replayed by
recomputing ``base64(HMAC-SHA256(secret, "<id>.<timestamp>.<body>"))`` and
comparing it, in constant time, with one of the ``v1,<signature>`` entries
of the ``webhook-signature`` header (standardwebhooks.com). Several secrets
(a rotation in progress) give several entries, separated by spaces, so the
receiver may hold either secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import TYPE_CHECKING

from ._errors import InvalidWebhookError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["SECRET_PREFIX", "check_webhook_id", "parse_secret", "sign", "signature_headers"]

SECRET_PREFIX = "whsec_"
"""What a Standard Webhooks secret starts with: ``whsec_<base64 of the key>``."""

_MIN_KEY_BYTES = 16  # shorter than a UUID is not a secret worth the name
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# Printable ASCII without spaces or commas: safe in a header and in the signed text.
_WEBHOOK_ID = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,255}")


def parse_secret(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret.

    Raises:
        InvalidWebhookError: no ``whsec_`` prefix, not base64, or a key under 16 bytes.
            The message never contains the secret.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidWebhookError(f"a webhook secret must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    if not _BASE64.fullmatch(encoded):
        raise InvalidWebhookError("a webhook secret must be base64 after 'whsec_'")
    try:
        # Unpadded base64 is common; extra padding is ignored by the decoder.
        key = base64.b64decode(encoded + "==")
    except binascii.Error:
        raise InvalidWebhookError("a webhook secret must be base64 after 'whsec_'") from None
    if len(key) < _MIN_KEY_BYTES:
        raise InvalidWebhookError(
            f"a webhook secret must hold at least {_MIN_KEY_BYTES} bytes, got {len(key)}"
        )
    return key


def check_webhook_id(webhook_id: str) -> str:
    """Return ``webhook_id`` if it can go in the ``webhook-id`` header and the signed text.

    Raises:
        InvalidWebhookError: empty, longer than 255, or with a space, comma or control.
    """
    if not _WEBHOOK_ID.fullmatch(webhook_id):
        raise InvalidWebhookError(
            "a webhook id must be 1 to 255 printable ASCII characters, "
            f"without spaces or commas: {webhook_id!r}"
        )
    return webhook_id


def sign(keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per key, space-separated.

    Raises:
        InvalidWebhookError: no key was given.
    """
    if not keys:
        raise InvalidWebhookError("at least one webhook secret is needed to sign")
    signed = b"%s.%d.%s" % (webhook_id.encode("ascii"), timestamp, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
        for key in keys
    )


def signature_headers(
    keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent as ``webhook_id`` at ``timestamp``."""
    return {
        "webhook-id": check_webhook_id(webhook_id),
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(keys, webhook_id, timestamp, body),
    }

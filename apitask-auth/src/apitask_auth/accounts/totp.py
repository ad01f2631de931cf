"""TOTP factors: the secret, its ``otpauth://`` URI, the QR code and the code check.

As GoTrue (pquerna/otp): a 160-bit secret in base32, six digits, 30-second
steps, SHA-1, and a code accepted one step either side of now. pyotp does the
arithmetic (its check compares in constant time); segno draws the QR code at
error correction level H, three pixels a module, as GoTrue's goqrsvg does.
"""

from __future__ import annotations

import io

import pyotp
import segno

__all__ = ["new_secret", "provisioning_uri", "qr_code_svg", "totp_matches"]

# Twenty bytes, as pquerna/otp's default SecretSize: 32 base32 characters, no padding.
_SECRET_CHARS = 32
# One step either side: GoTrue's ValidateOpts{Skew: 1}.
_SKEW = 1


def new_secret() -> str:
    """A fresh base32 secret."""
    return pyotp.random_base32(_SECRET_CHARS)


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_code_svg(uri: str) -> str:
    """The URI as an SVG QR code (text, not a data URI: the clients add the prefix).

    The clients prefix ``data:image/svg+xml;utf-8,`` without escaping, so the
    SVG must not contain ``#`` (it would end the URI there): the colour is
    written by name, as GoTrue's SVG writes it.
    """
    buffer = io.BytesIO()
    segno.make_qr(uri, error="h").save(buffer, kind="svg", scale=3, xmldecl=False)
    return buffer.getvalue().decode().replace('"#000"', '"black"')


def totp_matches(secret: str, code: str) -> bool:
    """Whether ``code`` is the secret's code for now, or one step before or after."""
    return pyotp.TOTP(secret).verify(code, valid_window=_SKEW)

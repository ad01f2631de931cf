"""aiosmtplib's exceptions translated to ours, at the one boundary where they arise.

The rule the pool and the outbox rely on: a 4xx reply, a dropped connection
or a timeout may pass, so it is a :class:`TransientMailError`; a 5xx reply
(or any other reply that is not a success), a TLS failure or a server that
lacks what we need (STARTTLS, AUTH, SMTPUTF8) will not, so it is a
:class:`PermanentMailError`. The reply code is kept on the error.
"""

from __future__ import annotations

import ssl

import aiosmtplib

from ._errors import MailError, PermanentMailError, TransientMailError

__all__ = ["is_drop", "mail_error"]


def mail_error(exc: Exception, step: str) -> MailError:
    """The :class:`MailError` for ``exc``, raised by aiosmtplib during ``step``."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        kind = TransientMailError if 400 <= exc.code < 500 else PermanentMailError
        return kind(f"SMTP server refused {step}: {exc.code} {exc.message}", code=exc.code)
    if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        return TransientMailError(f"SMTP server timed out during {step}: {exc}")
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
        # Before OSError: a certificate the client does not trust stays untrusted.
        return PermanentMailError(f"TLS failed during {step}: {exc}")
    if isinstance(exc, OSError):  # ConnectionError, SMTPServerDisconnected, refused...
        return TransientMailError(f"SMTP connection lost during {step}: {exc}")
    # SMTPException proper: STARTTLS or AUTH not offered, no usable AUTH method.
    return PermanentMailError(f"SMTP {step} failed: {exc}")


def is_drop(exc: Exception) -> bool:
    """Whether the server dropped the connection (or said 421, "closing")."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == 421
    return isinstance(exc, ConnectionError)

"""aiosmtplib's exceptions translated to ours, at the one boundary where they arise.

The rule the pool and the outbox rely on: a 4xx reply, a dropped connection
or a timeout may pass, so it is a :class:`TransientMailError`; a 5xx reply
(or any other reply that is not a success), a TLS failure or a server that
lacks what we need (STARTTLS, AUTH, SMTPUTF8) will not, so it is a
:class:`PermanentMailError`. The reply code is kept on the error.

A reply's text is kept too, for the operator who reads why a mail died, but
without addresses: servers echo the recipient in it, and the error's text is
logged and stored (an outbox job's ``last_error``). aiosmtplib's own
exception, which holds the reply as the server sent it, is therefore not
chained to ours: a logged traceback would print it.
"""

from __future__ import annotations

import ssl
from typing import NoReturn

import aiosmtplib

from .._errors import MailError, PermanentMailError, TransientMailError
from .._redact import redact_addresses

__all__ = ["is_drop", "mail_error", "raise_mail_error"]


def raise_mail_error(exc: Exception, step: str, recipient: str | None = None) -> NoReturn:
    """Raise :func:`mail_error`'s error; chained to ``exc`` unless ``exc`` holds a reply."""
    error = mail_error(exc, step, recipient)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        raise error from None
    raise error from exc


def mail_error(exc: Exception, step: str, recipient: str | None = None) -> MailError:
    """The :class:`MailError` for ``exc``, raised by aiosmtplib during ``step``.

    A server's reply text is kept without addresses; the local part of
    ``recipient`` is removed wherever it stands alone in it.
    """
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        kind = TransientMailError if 400 <= exc.code < 500 else PermanentMailError
        local_part = recipient.rpartition("@")[0] if recipient else None
        reply = redact_addresses(f"{exc.code} {exc.message}", local_part=local_part)
        return kind(f"SMTP server refused {step}: {reply}", code=exc.code)
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

"""apitask.mail: messages, SMTP delivery and the clients that wrap it.

Needs the ``mail`` extra (``pip install apitask[mail]``) for the SMTP client,
templates and validation; :class:`Message` and the errors need nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._client import MailClient
from ._errors import InvalidMessageError, MailError, PermanentMailError, TransientMailError
from ._message import Message, make_message_id

if TYPE_CHECKING:
    from ._smtp import SMTPClient, SMTPCounters, TLSMode

__all__ = [
    "Message",
    "make_message_id",
    "MailClient",
    "MailError",
    "TransientMailError",
    "PermanentMailError",
    "InvalidMessageError",
    # SMTP (imported on first use: needs aiosmtplib, from the mail extra)
    "SMTPClient",
    "SMTPCounters",
    "TLSMode",
]

_SMTP_NAMES = frozenset({"SMTPClient", "SMTPCounters", "TLSMode"})


def __getattr__(name: str) -> Any:
    # Lazy, so that Message and the errors work without the mail extra.
    if name in _SMTP_NAMES:
        from . import _smtp

        return getattr(_smtp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

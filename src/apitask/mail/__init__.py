"""apitask.mail: messages, SMTP delivery and the clients that wrap it.

Needs the ``mail`` extra (``pip install apitask[mail]``) for the SMTP client,
templates and validation; :class:`Message` and the errors need nothing.
"""

from __future__ import annotations

from ._client import MailClient
from ._errors import InvalidMessageError, MailError, PermanentMailError, TransientMailError
from ._message import Message, make_message_id

__all__ = [
    "Message",
    "make_message_id",
    "MailClient",
    "MailError",
    "TransientMailError",
    "PermanentMailError",
    "InvalidMessageError",
]

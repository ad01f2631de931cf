"""apitask.mail: messages, SMTP delivery and the clients that wrap it.

Needs the ``mail`` extra (``pip install apitask[mail]``) for the SMTP client,
templates and validation; :class:`Message` and the errors need nothing.
"""

from __future__ import annotations

from ._client import MailClient
from ._errors import InvalidMessageError, MailError, PermanentMailError, TransientMailError
from ._message import Message, make_message_id

# isort: split
# Clients that compose, background sending, validation.
from ._address import AddressReason, InvalidAddressError, check_syntax
from ._background import BackgroundClient
from ._clients import NoopClient, RecordingClient
from ._resolver import DNSResolver, Resolver, StaticResolver
from ._task import MailTask, mail_counters
from ._validate import ValidatingClient
from ._validation_service import ValidationService

__all__ = [
    "Message",
    "make_message_id",
    "MailClient",
    "MailError",
    "TransientMailError",
    "PermanentMailError",
    "InvalidMessageError",
    # clients that compose, background sending, validation
    "NoopClient",
    "RecordingClient",
    "BackgroundClient",
    "MailTask",
    "mail_counters",
    "ValidatingClient",
    "ValidationService",
    "InvalidAddressError",
    "AddressReason",
    "check_syntax",
    "Resolver",
    "DNSResolver",
    "StaticResolver",
]

"""apitask.mail: messages, SMTP delivery and the clients that wrap it.

Needs the ``mail`` extra (``pip install apitask[mail]``) for the SMTP client,
templates and validation; :class:`Message` and the errors need nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._client import MailClient
from ._errors import InvalidMessageError, MailError, PermanentMailError, TransientMailError
from ._headers import check_header
from ._message import Message, make_message_id
from ._redact import redact_addresses

# isort: split
# Clients that compose, background sending, validation.
from ._background import BackgroundClient
from ._noop import NoopClient
from ._recording import RecordingClient
from ._task import MailTask, mail_counters
from ._validation._address import AddressReason, InvalidAddressError, check_address
from ._validation._resolver import DNSResolver, Resolver, StaticResolver
from ._validation._service import ValidationService
from ._validation._validating_client import ValidatingClient

# isort: split
# Templates: GoTrue's mail types, Go template syntax, the template cache.
from ._templates._cache import TemplateCache, TemplateReloader
from ._templates._compile import CompiledTemplate, compile_template
from ._templates._defaults import MailType
from ._templates._gotemplate import TemplateError
from ._templates._mailer import MailData, TemplateMailer
from ._templates._source import TemplateSource

if TYPE_CHECKING:
    from ._smtp._client import SMTPClient, SMTPCounters, TLSMode

__all__ = [
    "Message",
    "make_message_id",
    "check_header",
    "redact_addresses",
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
    "check_address",
    "Resolver",
    "DNSResolver",
    "StaticResolver",
    # Templates
    "TemplateMailer",
    "MailData",
    "MailType",
    "TemplateError",
    "compile_template",
    "CompiledTemplate",
    "TemplateSource",
    "TemplateCache",
    "TemplateReloader",
    # SMTP (imported on first use: needs aiosmtplib, from the mail extra)
    "SMTPClient",
    "SMTPCounters",
    "TLSMode",
]

_SMTP_NAMES = frozenset({"SMTPClient", "SMTPCounters", "TLSMode"})


def __getattr__(name: str) -> Any:
    # Lazy, so that Message and the errors work without the mail extra.
    if name in _SMTP_NAMES:
        from ._smtp import _client

        return getattr(_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""apitask.mail: messages, SMTP delivery and the clients that wrap it.

Needs the ``mail`` extra (``pip install apitask[mail]``) for the SMTP client,
templates and validation; :class:`Message` and the errors need nothing.
"""

from __future__ import annotations

import typing as _typing

from .._exports import lazy_names as _lazy_names
from .._exports import show_public_paths as _show_public_paths
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

if _typing.TYPE_CHECKING:  # pragma: no cover - read by type checkers only
    from ._smtp._client import SMTPClient, SMTPCounters, TLSMode

__all__ = [
    "AddressReason",
    "BackgroundClient",
    "CompiledTemplate",
    "DNSResolver",
    "InvalidAddressError",
    "InvalidMessageError",
    "MailClient",
    "MailData",
    "MailError",
    "MailTask",
    "MailType",
    "Message",
    "NoopClient",
    "PermanentMailError",
    "RecordingClient",
    "Resolver",
    "SMTPClient",
    "SMTPCounters",
    "StaticResolver",
    "TLSMode",
    "TemplateCache",
    "TemplateError",
    "TemplateMailer",
    "TemplateReloader",
    "TemplateSource",
    "TransientMailError",
    "ValidatingClient",
    "ValidationService",
    "check_address",
    "check_header",
    "compile_template",
    "mail_counters",
    "make_message_id",
    "redact_addresses",
]

_SMTP_NAMES = frozenset({"SMTPClient", "SMTPCounters", "TLSMode"})


# Lazy, so that Message and the errors work without the mail extra.
__getattr__ = _lazy_names(__name__, dict.fromkeys(_SMTP_NAMES, "._smtp._client"), extra="mail")


# Reprs, tracebacks and the API docs show apitask.mail.Message, the path
# users import, not the private module it is written in. The lazy SMTP
# names get it on first use, in __getattr__.
_show_public_paths(__name__, globals(), (name for name in __all__ if name not in _SMTP_NAMES))

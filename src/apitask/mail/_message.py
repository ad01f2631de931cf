"""The final form of one e-mail: what is queued or stored is what is sent."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._errors import InvalidMessageError
from ._headers import check_bare_address, check_header, check_header_text

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._types import JSONValue

__all__ = ["Message", "make_message_id"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


def make_message_id(domain: str = "localhost") -> str:
    """Return a new, globally unique ``Message-ID`` such as ``<1a2b.c3d4@domain>``.

    Unlike :func:`email.utils.make_msgid`, it never looks up the host name
    (a blocking DNS call on every message when no domain is given): pass the
    domain of your From address.
    """
    check_header_text("Message-ID domain", domain)
    if not domain or any(char in domain for char in " <>@"):
        raise InvalidMessageError(f"Message-ID domain {domain!r} is not a domain")
    return f"<{time.time_ns():x}.{secrets.token_hex(8)}@{domain}>"


@dataclass(frozen=True, slots=True)
class Message:
    """One e-mail, rendered and checked, ready for any :class:`MailClient`.

    Every header-bound field is checked when the message is built: a line
    break or other control character in ``to``, ``subject``, a header name
    or value raises :class:`InvalidMessageError` naming the field, so no
    header injection can reach a mail server. ``message_id`` and ``date``
    are fixed here, once: a retry sends byte-identical mail, and receivers
    can de-duplicate by Message-ID.

    Attributes:
        to: the one recipient, a bare address (``user@example.com``).
        subject: the subject line (Unicode allowed).
        html: the HTML body; empty for a text-only mail.
        text: the plain-text body; empty for an HTML-only mail.
        headers: extra headers; they may not replace the ones the message
            writes itself (From, To, Subject, Date, Message-ID, MIME ones).
        type: a low-cardinality name for logs and metrics (``"recovery"``).
        message_id: the ``Message-ID`` header, ``<...@domain>``.
        date: the ``Date`` header (RFC 5322).
    """

    to: str
    subject: str
    html: str = ""
    text: str = ""
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    type: str = "mail"
    message_id: str = field(default_factory=make_message_id)
    date: str = field(default_factory=lambda: formatdate(usegmt=True))

    def __post_init__(self) -> None:
        check_bare_address("to", self.to)
        check_header_text("subject", self.subject)
        check_header_text("type", self.type)
        check_header_text("message_id", self.message_id)
        check_header_text("date", self.date)
        if not self.html and not self.text:
            raise InvalidMessageError("a message needs an html or a text body")
        if self.headers:
            for name, value in self.headers.items():
                check_header(name, value)
            # A private copy: the caller's dict may change after the checks.
            object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    @property
    def domain(self) -> str:
        """The recipient's domain (what logs show instead of the address)."""
        return self.to.rpartition("@")[2]

    def to_dict(self) -> dict[str, JSONValue]:
        """The message as JSON-ready data (an outbox payload)."""
        return {
            "to": self.to,
            "subject": self.subject,
            "html": self.html,
            "text": self.text,
            "headers": dict(self.headers),
            "type": self.type,
            "message_id": self.message_id,
            "date": self.date,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Rebuild a message from :meth:`to_dict` output, checking it again.

        Raises:
            InvalidMessageError: a field is missing, of the wrong type, or unsafe.
        """
        try:
            fields = {name: data[name] for name in _FIELDS}
        except KeyError as exc:
            raise InvalidMessageError(f"stored message has no {exc.args[0]!r}") from None
        headers = fields["headers"]
        if not isinstance(headers, dict) or not all(
            isinstance(value, str) for value in headers.values()
        ):
            raise InvalidMessageError("stored message headers must map names to strings")
        for name in _FIELDS:
            if name != "headers" and not isinstance(fields[name], str):
                raise InvalidMessageError(f"stored message field {name!r} is not a string")
        return cls(**fields)


_FIELDS = ("to", "subject", "html", "text", "headers", "type", "message_id", "date")

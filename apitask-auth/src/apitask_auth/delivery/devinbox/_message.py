"""A caught e-mail: parsed once, on arrival, into a read-only value.

Parsing is pure (bytes in, :class:`CaughtMessage` out) and never raises on a
malformed message: the dev inbox shows whatever a client sent, including the
broken mail a developer is trying to debug.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import AddressHeader
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from email.message import EmailMessage

__all__ = ["CaughtMessage", "extract_links", "parse_message"]

# A URL in plain text ends at whitespace or at a character that cannot be part of
# one unescaped; sentence punctuation right after it is trimmed below.
_TEXT_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?)]}'\""
_LINK_SCHEMES = ("http://", "https://")


@dataclass(frozen=True, slots=True)
class CaughtMessage:
    """One message the dev inbox received, parsed.

    Attributes:
        id: Inbox-assigned identifier (used in URLs).
        received_at: When the catcher accepted it (UTC).
        envelope_from: SMTP ``MAIL FROM`` address.
        envelope_to: SMTP ``RCPT TO`` addresses.
        from_: The ``From`` header, decoded.
        to: Addresses of the ``To`` header.
        cc: Addresses of the ``Cc`` header.
        subject: The ``Subject`` header, decoded (RFC 2047).
        date: The ``Date`` header as an aware datetime, when it parses.
        message_id: The ``Message-ID`` header.
        headers: Every header as (name, decoded value), in message order.
        text: The ``text/plain`` body, if any.
        html: The ``text/html`` body, if any.
        links: http(s) links found in the HTML and the text, in order, deduplicated.
        raw: The message exactly as received.
    """

    id: str
    received_at: datetime
    envelope_from: str
    envelope_to: tuple[str, ...]
    from_: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: datetime | None
    message_id: str
    headers: tuple[tuple[str, str], ...]
    text: str | None
    html: str | None
    links: tuple[str, ...]
    raw: bytes

    def recipients(self) -> set[str]:
        """Every address this message was for (envelope, To, Cc), lower-cased."""
        return {address.lower() for address in (*self.envelope_to, *self.to, *self.cc)}

    def to_json(self) -> dict[str, Any]:
        """The JSON shape served by ``/_dev/inbox/messages``."""
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "envelope_from": self.envelope_from,
            "envelope_to": list(self.envelope_to),
            "from": self.from_,
            "to": list(self.to),
            "cc": list(self.cc),
            "subject": self.subject,
            "date": self.date.isoformat() if self.date is not None else None,
            "message_id": self.message_id,
            "headers": [[name, value] for name, value in self.headers],
            "text": self.text,
            "html": self.html,
            "links": list(self.links),
            "size": len(self.raw),
        }


def parse_message(
    raw: bytes,
    *,
    envelope_from: str = "",
    envelope_to: Sequence[str] = (),
    received_at: datetime | None = None,
) -> CaughtMessage:
    """Parse a received message (RFC 5322 bytes) into a :class:`CaughtMessage`."""
    message: EmailMessage = BytesParser(policy=policy.default).parsebytes(raw)
    text = _body(message, "plain")
    html = _body(message, "html")
    return CaughtMessage(
        id=uuid.uuid4().hex[:12],
        received_at=received_at or datetime.now(UTC),
        envelope_from=envelope_from,
        envelope_to=tuple(envelope_to),
        from_=_header(message, "From"),
        to=_addresses(message, "To"),
        cc=_addresses(message, "Cc"),
        subject=_header(message, "Subject"),
        date=_date(message),
        message_id=_header(message, "Message-ID"),
        headers=tuple((name, _unfold(str(value))) for name, value in message.items()),
        text=text,
        html=html,
        links=tuple(_dedupe([*extract_links(html or "", html=True), *extract_links(text or "")])),
        raw=raw,
    )


def extract_links(content: str, *, html: bool = False) -> list[str]:
    """The http(s) links in a text body, or the ``href`` of every anchor in an HTML one."""
    if html:
        collector = _AnchorCollector()
        collector.feed(content)
        collector.close()
        return [href for href in collector.hrefs if href.lower().startswith(_LINK_SCHEMES)]
    return [_trim(match.group()) for match in _TEXT_URL.finditer(content)]


def _trim(url: str) -> str:
    # "Confirm (https://x/y)." -> https://x/y ; keep a ")" the URL itself opened.
    while url and url[-1] in _TRAILING_PUNCTUATION:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class _AnchorCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            for name, value in attrs:
                if name == "href" and value:
                    self.hrefs.append(value.strip())


def _header(message: EmailMessage, name: str) -> str:
    value = message.get(name)
    return _unfold(str(value)) if value is not None else ""


def _addresses(message: EmailMessage, name: str) -> tuple[str, ...]:
    header = message.get(name)
    if isinstance(header, AddressHeader):
        return tuple(address.addr_spec for address in header.addresses if address.addr_spec)
    return ()


def _date(message: EmailMessage) -> datetime | None:
    raw = _header(message, "Date")
    if not raw:
        return None
    try:
        return parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None


def _body(message: EmailMessage, subtype: str) -> str | None:
    try:
        part = message.get_body(preferencelist=(subtype,))
        if part is None:
            return None
        content = part.get_content()
    except (LookupError, ValueError):  # undecodable part: unknown charset, bad encoding
        return None
    return content if isinstance(content, str) else None


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]*", " ", value)

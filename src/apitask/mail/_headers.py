"""Header safety: the one place that decides what text may reach a mail header.

Header injection works by smuggling a line break (or another control
character that some relay turns into one) into a field that ends up in a
header. Rather than escaping, every header-bound field is checked and a bad
one is refused with an error that names it: a sender never silently gets a
different mail from the one it asked for.
"""

from __future__ import annotations

import re

from ._errors import InvalidMessageError

__all__ = [
    "RESERVED_HEADERS",
    "check_bare_address",
    "check_header",
    "check_header_name",
    "check_header_text",
]

# C0 controls (including CR, LF and NUL), DEL, C1 controls, and the Unicode
# line and paragraph separators, which some software treats as line breaks.
# A tab is allowed in free text: it is legal folding whitespace.
_UNSAFE_TEXT = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u0085]")
# RFC 5322 field names: printable US-ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# An address: no controls, no whitespace, no angle brackets, commas or
# semicolons (which would add recipients or break the header), exactly one
# "@" with something on each side. Deeper syntax is the validating client's.
# (Controls are refused before this runs.)
_ADDRESS = re.compile(r"[^\s<>,;@]+@[^\s<>,;@]+")

MAX_HEADER_NAME = 76
"""Longest extra header name: with its value it must fold within a 998-octet line."""

RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    )
)
"""Headers the message itself writes; extra headers may not override them."""


def check_header_text(field: str, value: str) -> str:
    """Return ``value`` if it is safe in a header, else raise naming ``field``."""
    bad = _UNSAFE_TEXT.search(value)
    if bad is not None:
        raise InvalidMessageError(
            f"{field} contains the control character {bad.group()!r} at position {bad.start()}"
        )
    return value


def check_header_name(name: str) -> str:
    """Return ``name`` if it is a legal, non-reserved extra header name."""
    if _FIELD_NAME.fullmatch(name) is None:
        raise InvalidMessageError(f"header name {name!r} is not a valid RFC 5322 field name")
    if len(name) > MAX_HEADER_NAME:
        raise InvalidMessageError(
            f"header name {name[:20]!r}... is over {MAX_HEADER_NAME} characters"
        )
    if name.lower() in RESERVED_HEADERS:
        raise InvalidMessageError(f"header {name!r} is set by the message itself")
    return name


def check_header(name: str, value: str) -> None:
    """Check one extra header as :class:`Message` does, before building one.

    The header-injection rule: ``name`` must be an RFC 5322 field name of at
    most 76 characters that the message does not write itself (From, To,
    Subject, Date, Message-ID, the MIME headers), and ``value`` may hold no
    line break or other control character (a tab is allowed).

    Raises:
        InvalidMessageError: the name or the value is refused; the message
            names the header.
    """
    check_header_name(name)
    check_header_text(f"header {name}", value)


def check_bare_address(field: str, value: str) -> str:
    """Return ``value`` if it is one bare address safe for an envelope and header.

    Header safety only (one ``@``, nothing that adds a recipient or breaks
    the header); whether the address is one GoTrue accepts is
    :func:`check_address`'s question.
    """
    check_header_text(field, value)
    if _ADDRESS.fullmatch(value) is None:
        # The value stays out of the message: it may be a recipient's address.
        raise InvalidMessageError(f"{field} is not a single e-mail address")
    return value

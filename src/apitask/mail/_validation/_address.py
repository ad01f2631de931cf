"""Address rules without I/O: GoTrue's syntax check and its extended static checks.

Two layers, as in GoTrue:

* :func:`check_address` is the API's ``validateEmail`` (docs/gotrue.md
  §1.8): required, at most 255 bytes, a plain ``local@domain`` address,
  lowercased on success. The local part is checked by email-validator, so
  international addresses (SMTPUTF8) pass and ``a..b@x`` does not. It is
  the one owner of address syntax: the service calls it on every address
  that comes in, and :class:`ValidatingClient` on every recipient.
* :func:`check_static` is the first step of GoTrue's extended validation
  (``validateclient``, §4.6): addresses and hosts people type that never
  receive mail.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

from .._errors import InvalidMessageError

__all__ = [
    "AddressReason",
    "InvalidAddressError",
    "ParsedAddress",
    "check_static",
    "check_address",
    "normalize_host",
    "parse_address",
]

# What the checks refuse, from GoTrue's validateclient (data, not code).
_BLOCKED_ADDRESSES = frozenset(
    {"test@gmail.com", "example@gmail.com", "someone@gmail.com", "test@email.com"}
)
_BLOCKED_HOSTS = frozenset(
    {
        # RFC 2606 names typed bare ("test@test").
        *("test", "example", "invalid", "local", "localhost"),
        # Commonly typed, and their DNS records cause bounces.
        *("test.com", "example.com", "example.net", "example.org"),
        # Frequent typos of gmail.com.
        *("gamil.com", "gamai.com"),
        # Not mail providers, but people use them.
        *("anonymous.com", "email.com"),
    }
)
_BLOCKED_SUFFIXES = (".test", ".example", ".invalid", ".local", ".localhost")
# Gmail user names have at least 6 characters (GoTrue: fewer bounces).
_GMAIL_MIN_LOCAL = 6
_MAX_BYTES = 255
# GoTrue's domain rule: dot-separated labels of 1-63 letters, digits and
# hyphens, neither starting nor ending with a hyphen; no dot required.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ASCII_LABELS = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class AddressReason(enum.StrEnum):
    """Why an address was refused; each maps to one GoTrue API error code."""

    EMPTY = "email_empty"
    """No address (GoTrue 400 ``validation_failed``)."""
    TOO_LONG = "email_too_long"
    """More than 255 bytes (GoTrue 400 ``validation_failed``)."""
    SYNTAX = "email_syntax"
    """Not a plain ``local@domain`` address (GoTrue 400 ``validation_failed``)."""
    ADDRESS = "invalid_email_address"
    """A known-bad address, or the validation service said no (400 ``email_address_invalid``)."""
    DNS = "invalid_email_dns"
    """The domain cannot receive mail (400 ``email_address_invalid``)."""
    MX = "invalid_email_mx"
    """A mail server of the domain is blocked (400 ``email_address_invalid``;
    GoTrue leaves this one unmapped and answers 500)."""

    @property
    def error_code(self) -> str:
        """The GoTrue API error code for this reason."""
        return _ERROR_CODES[self]


_ERROR_CODES = {
    AddressReason.EMPTY: "validation_failed",
    AddressReason.TOO_LONG: "validation_failed",
    AddressReason.SYNTAX: "validation_failed",
    AddressReason.ADDRESS: "email_address_invalid",
    AddressReason.DNS: "email_address_invalid",
    AddressReason.MX: "email_address_invalid",
}


class InvalidAddressError(InvalidMessageError):
    """An address was refused before any mail was handed on.

    ``str()`` is GoTrue's message for the API response.

    Attributes:
        address: the address as given.
        reason: why (an :class:`AddressReason`).
        error_code: the GoTrue API error code (``"validation_failed"`` or
            ``"email_address_invalid"``); the HTTP status is 400.
        detail: a longer explanation for logs, when there is one.
    """

    def __init__(self, address: str, reason: AddressReason, detail: str | None = None) -> None:
        super().__init__(_MESSAGES.get(reason) or f'Email address "{address}" is invalid')
        self.address = address
        self.reason = reason
        self.error_code = reason.error_code
        self.detail = detail


_MESSAGES = {
    AddressReason.EMPTY: "An email address is required",
    AddressReason.TOO_LONG: "An email address is too long",
    AddressReason.SYNTAX: "Unable to validate email address: invalid format",
}


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    """An address that passed :func:`check_address`.

    Attributes:
        normalized: lowercased, Unicode-normalized (NFC) form.
        local: the part before the ``@`` (normalized).
        domain: the part after it (normalized, Unicode for international domains).
        ascii_domain: the domain as DNS sees it (IDNA ``xn--`` labels).
    """

    normalized: str
    local: str
    domain: str
    ascii_domain: str


def parse_address(address: str) -> ParsedAddress:
    """Check ``address`` as GoTrue's API does and return its parts.

    Raises:
        InvalidAddressError: empty, too long, or not a plain address.
    """
    if not address:
        raise InvalidAddressError(address, AddressReason.EMPTY)
    if len(address.encode("utf-8", "surrogatepass")) > _MAX_BYTES:
        raise InvalidAddressError(address, AddressReason.TOO_LONG)
    # Imported here: apitask.mail works without the mail extra until an
    # address is validated.
    from email_validator import EmailNotValidError, validate_email

    local, _, domain = address.rpartition("@")
    # email-validator refuses RFC 6761 special-use names (localhost, *.test,
    # *.local...) as syntax errors. GoTrue's syntax accepts them (only its
    # extended checks refuse them), and a dev setup mails user@localhost: so
    # for those the domain gets GoTrue's label rule and the local part the
    # library's check against a stand-in domain.
    special = _special_use(domain)
    try:
        result = validate_email(
            f"{local}@example.com" if special else address,
            allow_smtputf8=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            check_deliverability=False,
            globally_deliverable=False,  # GoTrue: a dot is not required
        )
    except EmailNotValidError as exc:
        raise InvalidAddressError(address, AddressReason.SYNTAX, str(exc)) from None
    if special:
        domain = domain.lower()
        local = result.local_part.lower()
        return ParsedAddress(f"{local}@{domain}", local, domain, domain)
    normalized = result.normalized.lower()
    return ParsedAddress(
        normalized, result.local_part.lower(), result.domain.lower(), result.ascii_domain.lower()
    )


def check_address(address: str) -> str:
    """Return ``address`` lowercased if GoTrue's API would accept it.

    Raises:
        InvalidAddressError: empty, longer than 255 bytes, or not a plain
            ``local@domain`` address (a display name, quotes, a bracketed IP,
            a bad label...); ``reason`` says which.
    """
    return parse_address(address).normalized


def _special_use(domain: str) -> bool:
    from email_validator import SPECIAL_USE_DOMAIN_NAMES

    name = domain.lower()
    if not _ASCII_LABELS.fullmatch(name):
        return False
    return any(name == use or name.endswith(f".{use}") for use in SPECIAL_USE_DOMAIN_NAMES)


def check_static(parsed: ParsedAddress) -> None:
    """GoTrue's extended static checks: known-bad addresses and hosts.

    Raises:
        InvalidAddressError: ``ADDRESS`` for the addresses people type as a
            placeholder and gmail user names under 6 characters, ``DNS`` for
            reserved and commonly mistyped hosts.
    """
    address, host = parsed.normalized, parsed.domain
    if address in _BLOCKED_ADDRESSES:
        raise InvalidAddressError(address, AddressReason.ADDRESS, "a placeholder address")
    if host in _BLOCKED_HOSTS or host.endswith(_BLOCKED_SUFFIXES):
        raise InvalidAddressError(address, AddressReason.DNS, f"{host} does not receive mail")
    if host == "gmail.com" and len(parsed.local.encode()) < _GMAIL_MIN_LOCAL:
        raise InvalidAddressError(
            address, AddressReason.ADDRESS, "gmail user names have at least 6 characters"
        )


def normalize_host(name: str) -> str:
    """A host name or IP address in the form blocked-MX entries are compared in.

    Lowercase, without the final dot (GoTrue matches entries with and
    without it); IP addresses in their canonical text form.
    """
    name = name.strip().lower().removesuffix(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name

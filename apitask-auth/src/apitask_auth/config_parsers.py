"""GoTrue's environment syntax: Go durations, comma lists, JSON values, SMTP headers, URLs.

Pure functions from the text of a variable to a value, or ``ValueError``;
:mod:`apitask_auth.config` names the variable in the message. ``Duration``
and ``CommaList`` are the field types that apply them in :class:`Settings
<apitask_auth.config.Settings>`.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

import apitask
from apitask.mail import InvalidMessageError, check_header
from apitask.webhooks import InvalidWebhookError, parse_secret
from apitask_auth.accounts.phones import format_phone, is_e164

__all__ = [
    "CommaList",
    "Duration",
    "EmailRateLimit",
    "check_http_url",
    "check_hook_uri",
    "parse_duration",
    "parse_hook_secrets",
    "parse_smtp_headers",
    "parse_test_otps",
]


def parse_duration(value: str) -> timedelta:
    """Parse a Go duration (``30s``, ``1m30s``, ``1.5h``, ``-2m``, ``0``; a bare
    number is seconds, ``d`` is days): :func:`apitask.parse_duration`'s syntax.

    Raises:
        ValueError: the text is not a duration, or is past Go's range.
    """
    return timedelta(seconds=apitask.parse_duration(value))


def _duration(value: object) -> object:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


# A scheme and a host; what follows the host is the caller's to judge.
_HTTP_URL = re.compile(r"^https?://[^/\s]+")


def check_http_url(value: str) -> str:
    """Return ``value`` if it is an absolute http(s) URL with a host.

    Raises:
        ValueError: it is not.
    """
    if not _HTTP_URL.match(value):
        raise ValueError("expected an http(s) URL")
    return value


# GoTrue lets an http:// hook reach only these hosts (a dev machine, a container's host).
_HTTP_HOOK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "host.docker.internal"})


def check_hook_uri(uri: str) -> str:
    """Return a hook's URI if we can call it: ``https://``, or ``http://`` to a local host.

    GoTrue also takes ``pg-functions://`` (a database function); we do not.

    Raises:
        ValueError: another scheme, a malformed URL, or http to another host.
    """
    parts = urlsplit(uri)
    if parts.scheme == "pg-functions":
        raise ValueError("pg-functions hooks are not supported: use an http(s) endpoint")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("expected an https:// URL (http:// for localhost)")
    if parts.scheme == "http" and parts.hostname not in _HTTP_HOOK_HOSTS:
        raise ValueError("only localhost, 127.0.0.1, and ::1 are supported with http")
    check_http_url(uri)
    return uri


def parse_hook_secrets(raw: str) -> list[str]:
    """A hook's secrets: ``v1,whsec_<base64>`` values separated by ``|`` (GoTrue's syntax).

    Returns the ``whsec_...`` part of each. GoTrue also accepts asymmetric
    ``v1a,whpk_...`` keys (and then cannot sign with them); we refuse them, and
    we require at least one secret: an unsigned hook cannot be told from a forgery.

    Raises:
        ValueError: none given, or one that is not a valid ``v1,whsec_`` secret
            (the message never repeats a secret).
    """
    secrets = [item.strip() for item in raw.split("|") if item.strip()]
    if not secrets:
        raise ValueError("at least one secret is required (v1,whsec_<base64>, '|' between)")
    keys: list[str] = []
    for number, secret in enumerate(secrets, 1):
        version, _, key = secret.partition(",")
        if version == "v1a":
            raise ValueError(
                f"secret {number}: asymmetric (v1a,whpk_...) secrets are not supported"
            )
        if version != "v1":
            raise ValueError(f"secret {number}: expected v1,whsec_<base64>")
        try:
            parse_secret(key)
        except InvalidWebhookError as exc:
            raise ValueError(f"secret {number}: {exc}") from None
        keys.append(key)
    return keys


# RFC 9110's token: the characters a header name may have.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def parse_smtp_headers(raw: str) -> dict[str, list[str]]:
    """``GOTRUE_SMTP_HEADERS``: a JSON object of header name -> list of values (§4.5).

    Empty names and values are dropped, as GoTrue does. Unlike GoTrue, which
    warns and ignores a bad value, a bad value stops the service at start: a
    header that could never be sent would otherwise fail every mail.

    Raises:
        ValueError: not such an object, or a name or value that cannot be a header.
    """
    if not raw.strip():
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise ValueError(
            f"expected a JSON object of header name to list of values: {exc}"
        ) from None
    if not isinstance(decoded, dict):
        raise ValueError("expected a JSON object of header name to list of values")
    headers: dict[str, list[str]] = {}
    for name, values in decoded.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"header {name!r}: expected a list of strings")
        kept = [value for value in values if value]
        if name and kept:
            headers[name] = kept
    try:  # the message's own header rules: names, reserved names, control characters
        for name, values in headers.items():
            check_header(name, ", ".join(values))
    except InvalidMessageError as exc:
        raise ValueError(str(exc)) from None
    return headers


def _json_value(raw: str, kind: type[dict[str, Any]] | type[list[Any]], expected: str) -> Any:
    """Parse a JSON setting that must be ``kind`` of strings (objects: of lists of
    strings); empty text is an empty value. Unlike GoTrue (a warning), a bad value
    stops the start."""
    if not raw.strip():
        return kind()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"expected {expected}: {exc}") from None
    items = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    )
    if not isinstance(value, kind) or items is None:
        raise ValueError(f"expected {expected}")
    for item in items:
        strings = item if isinstance(value, dict) else [item]
        if not isinstance(strings, list) or not all(isinstance(v, str) for v in strings):
            raise ValueError(f"expected {expected}")
    return value


def parse_test_otps(raw: str) -> dict[str, str]:
    """``GOTRUE_SMS_TEST_OTP``: ``number:code`` pairs, comma-separated (Go's map syntax).

    A number is kept in GoTrue's stored form (one leading ``+`` and spaces
    dropped), since that is the form the flows look it up by; it must then be
    E.164 digits, and a code must be digits, or the start fails (GoTrue would
    keep a pair no request can ever match).
    """
    found: dict[str, str] = {}
    for pair in (item.strip() for item in raw.split(",")):
        if not pair:
            continue
        number, colon, code = pair.partition(":")
        number = format_phone(number.strip())
        code = code.strip()
        if not colon or not is_e164(number):
            raise ValueError(f"expected number:code pairs with E.164 numbers, got {pair!r}")
        if not re.fullmatch(r"[0-9]{1,20}", code):
            raise ValueError(f"expected a code of digits for {number}, got {code!r}")
        found[number] = code
    return found


Duration = Annotated[timedelta, BeforeValidator(_duration)]
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]


@dataclass(frozen=True, slots=True)
class EmailRateLimit:
    """``GOTRUE_RATE_LIMIT_EMAIL_SENT``: N per hour, or a bucket of N refilled every ``every``."""

    count: float
    every: timedelta | None = None

    @classmethod
    def parse(cls, raw: str) -> EmailRateLimit:
        """Parse ``"30"`` (per hour, fixed window) or ``"10/1m"`` (token bucket)."""
        number, _, per = raw.partition("/")
        count = float(number)
        if not math.isfinite(count) or count < 0:
            raise ValueError(f"expected a non-negative number, got {number!r}")
        if not per:
            return cls(count)
        every = parse_duration(per)
        if every <= timedelta(0):
            raise ValueError(f"expected a positive duration after '/', got {per!r}")
        return cls(count, every)

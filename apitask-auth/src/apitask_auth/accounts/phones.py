"""Phone numbers as GoTrue reads them: E.164 digits, no ``+`` (§11).

GoTrue removes one leading ``+`` and every space, then wants
``^[1-9][0-9]{1,14}$``: a country code that does not start with 0 and at most
15 digits in all. The number is stored and compared in that form, so
``+1 555 0100`` and ``15550100`` are the same account.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from apitask_auth.errors import ErrorCode, bad_request

if TYPE_CHECKING:
    from apitask_auth.delivery.texter import Channel

__all__ = ["INVALID_CHANNEL", "format_phone", "is_e164", "validate_channel", "validate_phone"]

# fullmatch: Go's regexp has no "$ before a final newline" leniency.
_E164 = re.compile(r"[1-9][0-9]{1,14}")

INVALID_CHANNEL = "Invalid channel, supported values are 'sms' or 'whatsapp'"


def format_phone(phone: str) -> str:
    """GoTrue's ``formatPhoneNumber``: one leading ``+`` and all spaces removed."""
    return phone.removeprefix("+").replace(" ", "")


def is_e164(phone: str) -> bool:
    """Whether a formatted number is E.164 as GoTrue checks it."""
    return _E164.fullmatch(phone) is not None


def validate_phone(phone: str | None) -> str:
    """The number in stored form, or GoTrue's 400 ``validation_failed``."""
    formatted = format_phone(phone or "")
    if not is_e164(formatted):
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Invalid phone number format (E.164 required)"
        )
    return formatted


def validate_channel(channel: str | None) -> Channel:
    """``sms`` when not given (GoTrue's default); ``sms`` or ``whatsapp`` otherwise.

    GoTrue allows ``whatsapp`` only with a Twilio provider; here the texter
    decides whether it can deliver one (a refusal is ``sms_send_failed``).
    """
    if not channel or channel == "sms":
        return "sms"
    if channel == "whatsapp":
        return "whatsapp"
    raise bad_request(ErrorCode.VALIDATION_FAILED, INVALID_CHANNEL)

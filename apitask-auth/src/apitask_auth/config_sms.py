"""The SMS provider's settings, checked at start (delivery/sms uses them).

GoTrue's providers are chosen by ``GOTRUE_SMS_PROVIDER``; we send through
Twilio's Messages API and name the others as not supported yet, so a
configuration written for GoTrue fails at start instead of at the first text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apitask_auth.config import Settings

__all__ = [
    "SUPPORTED_PROVIDERS",
    "UNSUPPORTED_PROVIDERS",
    "check_sms_provider",
    "check_sms_settings",
]

SUPPORTED_PROVIDERS = ("twilio",)
# GoTrue's other providers: room is left for them (delivery/sms/provider.py).
UNSUPPORTED_PROVIDERS = ("messagebird", "textlocal", "vonage", "twilio_verify")

# Twilio's SIDs are two letters and 32 hex digits; we only insist on what
# keeps them safe in a URL path and a form (GoTrue checks presence only).
_SID = re.compile(r"[A-Za-z0-9]+")


def check_sms_provider(value: str) -> str:
    """``GOTRUE_SMS_PROVIDER``: empty (no provider), or one we send through.

    Raises:
        ValueError: a GoTrue provider we do not support yet, or an unknown one.
    """
    name = value.strip().lower()
    if not name or name in SUPPORTED_PROVIDERS:
        return name
    if name in UNSUPPORTED_PROVIDERS:
        raise ValueError(
            f"{name!r} is a GoTrue SMS provider apitask-auth does not support yet "
            f"(supported: {', '.join(SUPPORTED_PROVIDERS)})"
        )
    raise ValueError(f"unknown SMS provider (supported: {', '.join(SUPPORTED_PROVIDERS)})")


def check_sms_settings(settings: Settings) -> None:
    """The chosen provider's own settings: present, and safe to send.

    Raises:
        ValueError: the message starts with the variable's name.
    """
    if settings.sms_provider != "twilio":
        return
    for variable, value in (
        ("GOTRUE_SMS_TWILIO_ACCOUNT_SID", settings.sms_twilio_account_sid),
        ("GOTRUE_SMS_TWILIO_AUTH_TOKEN", settings.sms_twilio_auth_token),
        ("GOTRUE_SMS_TWILIO_MESSAGE_SERVICE_SID", settings.sms_twilio_message_service_sid),
    ):
        if not value:
            raise ValueError(f"{variable}: required when GOTRUE_SMS_PROVIDER is twilio")
    if not _SID.fullmatch(settings.sms_twilio_account_sid):
        raise ValueError("GOTRUE_SMS_TWILIO_ACCOUNT_SID: expected letters and digits only")
    if settings.sms_twilio_content_sid and not _SID.fullmatch(settings.sms_twilio_content_sid):
        raise ValueError("GOTRUE_SMS_TWILIO_CONTENT_SID: expected letters and digits only")

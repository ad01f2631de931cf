"""What sends a text: the provider protocol, and the provider the settings choose.

Twilio's Messages API is the one real provider; GoTrue's others
(messagebird, textlocal, vonage, twilio_verify) are refused at start
(config_sms.py) until one is written: a class with :meth:`SmsProvider.send`
and :meth:`SmsProvider.aclose`, and a branch in :func:`provider_for`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .twilio import TwilioProvider

if TYPE_CHECKING:
    from apitask_auth.config import Settings

    from .message import TextMessage

__all__ = ["SmsProvider", "provider_for"]


class SmsProvider(Protocol):
    """Sends one text; raises :class:`~.errors.TransientSmsError` or
    :class:`~.errors.PermanentSmsError` when it cannot."""

    async def send(self, message: TextMessage) -> str:
        """Send ``message``; return the provider's id for it."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def provider_for(settings: Settings) -> SmsProvider | None:
    """The provider ``GOTRUE_SMS_PROVIDER`` names (checked at load), or None for none."""
    if settings.sms_provider == "twilio":
        return TwilioProvider(
            account_sid=settings.sms_twilio_account_sid,
            auth_token=settings.sms_twilio_auth_token,
            sender=settings.sms_twilio_message_service_sid,
            content_sid=settings.sms_twilio_content_sid or None,
            base_url=settings.sms_twilio_api_base_url,
            timeout=settings.internal_http_timeout.total_seconds(),
        )
    return None

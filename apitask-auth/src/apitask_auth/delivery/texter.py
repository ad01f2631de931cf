"""The service's one door to text messages (SMS, WhatsApp), as :mod:`.mailer` is to mail.

Handlers call :meth:`Texter.send` with the number, the one-time code and the
user; the texter renders the text (``GOTRUE_SMS_TEMPLATE``, or the MFA
template for factor challenges) and delivers it as the delivery mode says,
exactly as mail goes: in the handler (``inline``), in the request scope
(``request``), by the worker pool (``pool``) or as an outbox job written in
the flow's transaction (``outbox``). The provider is Twilio's Messages API, the
dev inbox (dev mode without a provider), or GoTrue's send-SMS hook when it
is enabled (it replaces the provider, as in GoTrue).

GoTrue's own interface is the same shape: ``SendMessage(phone, message,
channel, otp)``; its send-SMS hook receives the user and the code, not the
text, which is why the code travels separately here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.storage.rows import User

__all__ = ["Channel", "Purpose", "Texter", "UnconfiguredTexter"]

# GoTrue's channels: a text message, or WhatsApp (Twilio only).
Channel = Literal["sms", "whatsapp"]
# Which template the text is rendered from: a sign-in / confirmation /
# phone-change code (GOTRUE_SMS_TEMPLATE) or an MFA challenge
# (GOTRUE_MFA_PHONE_TEMPLATE).
Purpose = Literal["otp", "mfa"]


class Texter(Protocol):
    """What the handlers need from text messages."""

    async def send(
        self,
        phone: str,
        otp: str,
        *,
        user: User,
        channel: Channel = "sms",
        purpose: Purpose = "otp",
        connection: AsyncConnection,
    ) -> None:
        """Render the text carrying ``otp`` for ``phone`` now and deliver it per the mode.

        ``phone`` is E.164 without the ``+`` (as GoTrue stores it);
        ``connection`` is the flow's open transaction: the outbox writes its
        job there.
        """
        ...

    async def aclose(self) -> None:
        """Finish deliveries and release connections."""
        ...


class UnconfiguredTexter:
    """The texter of a service with no SMS provider: every send is refused.

    A placeholder until the SMS chain is assembled from the settings; phone
    flows are off (``GOTRUE_EXTERNAL_PHONE_ENABLED``) unless a provider is set.
    """

    async def send(
        self,
        phone: str,
        otp: str,
        *,
        user: User,
        channel: Channel = "sms",
        purpose: Purpose = "otp",
        connection: AsyncConnection,
    ) -> None:
        """Refuse: there is no provider to send through."""
        raise RuntimeError("no SMS provider is configured (GOTRUE_SMS_PROVIDER)")

    async def aclose(self) -> None:
        """Nothing to close."""

"""The service's texter: renders in the request, delivers as the mode says.

What a handler's :meth:`SmsChain.send` goes through, in the request::

    TextTemplates   GOTRUE_SMS_TEMPLATE / GOTRUE_MFA_PHONE_TEMPLATE -> the text
    TextMessage     number, text, channel: checked, final
    apitask.run     SmsTask(message, provider), where the delivery mode says

The mode is the service's :class:`~apitask_auth.delivery.runtime.DeliveryRuntime`,
the one the mail goes through (``inline``: in the handler, the provider's
error raised; ``request``: in the request's scope, the response held until
sent; ``pool``: the worker pool, retried with backoff; ``outbox``: a job
written in the flow's transaction). The chain registers the ``"sms."``
prefix with it, so its outbox worker (and ``apitask-auth worker``) sends
stored texts.

The provider is Twilio (``GOTRUE_SMS_PROVIDER=twilio``) or, in dev mode
without a provider, the dev inbox. Outside dev mode without a provider the
service keeps :class:`~apitask_auth.delivery.texter.UnconfiguredTexter`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from apitask import Outcome, TaskCounters
from apitask_auth.delivery.send_hooks import SmsHookTexter, send_hook
from apitask_auth.delivery.texter import UnconfiguredTexter

from .devinbox import DevInboxProvider
from .message import TextMessage
from .provider import provider_for
from .task import SmsTask
from .templates import TextTemplates

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.config import Settings
    from apitask_auth.delivery.devinbox import DevInbox
    from apitask_auth.delivery.runtime import DeliveryRuntime
    from apitask_auth.delivery.texter import Channel, Purpose, Texter
    from apitask_auth.storage.rows import User

    from .provider import SmsProvider

__all__ = ["SmsChain", "texter_for"]

logger = logging.getLogger("apitask_auth")


def texter_for(
    settings: Settings, runtime: DeliveryRuntime, inbox: DevInbox | None = None
) -> Texter:
    """The texter the settings describe: the send-SMS hook when it is enabled (it
    replaces the provider, as in GoTrue), the configured provider, the dev inbox
    (dev mode without one), or the refusing placeholder."""
    hook = send_hook(settings, "send_sms")
    if hook is not None:
        return SmsHookTexter(hook, runtime)
    provider = provider_for(settings)
    if provider is None and settings.dev and inbox is not None:
        logger.info("DEV MODE: no GOTRUE_SMS_PROVIDER; text messages go to the dev inbox")
        provider = DevInboxProvider(inbox)
    if provider is None:
        return UnconfiguredTexter()
    return SmsChain(settings, runtime, provider)


class SmsChain:
    """Render a text in the request and hand it to apitask as an :class:`SmsTask`.

    Args:
        settings: the configuration (the templates, the WhatsApp content SID).
        runtime: the service's delivery runtime; ``"sms."`` is registered now.
        provider: what sends (Twilio, the dev inbox, a test's provider).
    """

    def __init__(self, settings: Settings, runtime: DeliveryRuntime, provider: SmsProvider) -> None:
        self.templates = TextTemplates(settings)
        self.runtime = runtime
        self.provider = provider
        # With a WhatsApp content template Twilio gets the code alone, so the
        # stored text must carry it; otherwise it never leaves the text.
        self.code_apart = bool(settings.sms_twilio_content_sid)
        runtime.register("sms.", SmsTask.factory(provider))
        # Texts handed to the chain, by purpose: what /metrics counts as send
        # operations (as GoTrue counts mails handed to its mailer).
        self.operations = TaskCounters()

    def task(self, phone: str, otp: str, channel: Channel, purpose: Purpose) -> SmsTask:
        """The task that sends ``otp`` to ``phone``, rendered now.

        Raises:
            TemplateError: the template failed while rendering.
            ValueError: ``phone`` is not E.164 digits, or the text is empty or too long.
        """
        message = TextMessage(
            to=phone,
            text=self.templates.render(purpose, otp),
            channel=channel,
            purpose=purpose,
            code=otp if self.code_apart and channel == "whatsapp" else None,
        )
        return SmsTask(message, self.provider)

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
        """Render now; deliver as the mode says (see the module docstring).

        Raises:
            TemplateError, ValueError: the text cannot be rendered or sent safely.
            SmsError: ``inline`` only: the provider refused it or failed.
            TaskError: the pool or the scope refused the task (it was not sent).
        """
        self.operations.add(purpose, Outcome.SUBMITTED)
        await self.runtime.run(self.task(phone, otp, channel, purpose), connection)

    async def aclose(self) -> None:
        """Close the provider's connections (after the runtime has drained)."""
        await self.provider.aclose()

"""One text as an apitask task: runnable anywhere, storable in the outbox.

An :class:`SmsTask` carries the final :class:`TextMessage`, so wherever it
runs (in the request's scope, on the worker pool, in an outbox worker an hour
later) the provider gets the same number and text. A failure is logged with
the purpose and a masked number (never the text: it holds the code), counted,
and re-raised for the runner: :class:`TransientSmsError` is retried with
backoff, anything else is final (dead-lettered with the provider's words).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from apitask import DeliveryTask, TaskCounters

from .message import TextMessage

if TYPE_CHECKING:
    from collections.abc import Mapping

    from apitask import JSONValue

    from .provider import SmsProvider

__all__ = ["SmsTask", "sms_counters"]

logger = logging.getLogger("apitask_auth.sms")

sms_counters = TaskCounters()
"""Text outcomes in this process, keyed by purpose (``"otp"``, ``"mfa"``)."""


class SmsTask(DeliveryTask[TextMessage, "SmsProvider"]):
    """Send one :class:`TextMessage` through an :class:`SmsProvider`.

    A :class:`~apitask.DeliveryTask`: ``type`` is ``"sms.<purpose>"``,
    ``payload()`` is ``{"sms": ...}`` (what is sent: number, text, channel),
    and :meth:`factory` rebuilds it in an outbox worker or from a pool's
    spill (a payload that is not a valid text, or whose purpose does not
    match the stored type, raises ``ValueError``: the worker dead-letters
    it). The outbox erases the payload once the task succeeded.

    Args:
        message: the text to send.
        provider: what sends it (Twilio, the dev inbox...).
        counters: where outcomes are counted, by purpose.
    """

    type_prefix = "sms."
    payload_key = "sms"
    default_counters = sms_counters
    channel = "sms"
    noun = "text"
    logger = logger

    __slots__ = ()

    def __init__(
        self,
        message: TextMessage,
        provider: SmsProvider,
        *,
        counters: TaskCounters = sms_counters,
    ) -> None:
        super().__init__(message, provider, counters=counters)

    @property
    def message(self) -> TextMessage:
        """The text this task sends."""
        return self.item

    @property
    def provider(self) -> SmsProvider:
        """What sends it."""
        return self.sender

    @property
    def label(self) -> str:
        """The text's purpose (``"otp"``)."""
        return self.item.purpose

    @classmethod
    def decode(cls, data: Mapping[str, JSONValue]) -> TextMessage:
        """:meth:`TextMessage.from_dict`: the stored text, checked again."""
        return TextMessage.from_dict(data)

    def describe(self) -> str:
        """``"otp text to +15…67"``: a masked number, never the text (it holds the code)."""
        return f"{self.item.purpose} text to {self.item.masked}"

    def log_fields(self) -> dict[str, str]:
        """The channel the text goes by (``"sms"``, ``"whatsapp"``)."""
        return {"channel": self.item.channel}

    def delivered(self, result: object) -> None:
        """Log the provider's id for the text (what its console searches by)."""
        self.logger.info(
            "sms: %s text sent to %s",
            self.item.purpose,
            self.item.masked,
            extra={"action": "sms", "task_type": self.type, "provider_id": result},
        )

    def __repr__(self) -> str:
        return f"<SmsTask {self.type} to {self.item.masked}>"

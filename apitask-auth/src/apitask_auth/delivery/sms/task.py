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

from apitask import Outcome, TaskCounters, TransientError

from .message import TextMessage

if TYPE_CHECKING:
    from collections.abc import Mapping

    from apitask import JSONValue, Task
    from apitask.outbox import TaskFactory

    from .provider import SmsProvider

__all__ = ["SmsTask", "sms_counters"]

logger = logging.getLogger("apitask_auth.sms")

sms_counters = TaskCounters()
"""Text outcomes in this process, keyed by purpose (``"otp"``, ``"mfa"``)."""


class SmsTask:
    """Send one :class:`TextMessage` through an :class:`SmsProvider`.

    A :class:`~apitask.DurableTask`: ``type`` is ``"sms.<purpose>"``,
    ``payload()`` is ``{"sms": ...}`` (what is sent: number, text, channel),
    and :meth:`factory` rebuilds it in an outbox worker or from a pool's
    spill. The outbox erases the payload once the task succeeded.

    Args:
        message: the text to send.
        provider: what sends it (Twilio, the dev inbox...).
        counters: where outcomes are counted, by purpose.
    """

    __slots__ = ("counters", "message", "provider", "type")

    def __init__(
        self,
        message: TextMessage,
        provider: SmsProvider,
        *,
        counters: TaskCounters = sms_counters,
    ) -> None:
        self.message = message
        self.provider = provider
        self.counters = counters
        self.type = f"sms.{message.purpose}"

    def __repr__(self) -> str:
        return f"<SmsTask {self.type} to {self.message.masked}>"

    def payload(self) -> Mapping[str, JSONValue]:
        """The stored form: ``{"sms": message.to_dict()}``."""
        return {"sms": self.message.to_dict()}

    async def run(self) -> None:
        """Send the text; log, count and re-raise a failure."""
        message = self.message
        try:
            sid = await self.provider.send(message)
        except Exception as exc:
            self.counters.add(message.purpose, Outcome.FAILED)
            logger.error(
                "sms: %s text to %s not sent (%s): %s",
                message.purpose,
                message.masked,
                "transient, may be retried" if isinstance(exc, TransientError) else "final",
                exc,
                extra={"action": "sms", "task_type": self.type, "channel": message.channel},
            )
            raise
        self.counters.add(message.purpose, Outcome.SUCCEEDED)
        logger.info(
            "sms: %s text sent to %s",
            message.purpose,
            message.masked,
            extra={"action": "sms", "task_type": self.type, "provider_id": sid},
        )

    @classmethod
    def factory(
        cls, provider: SmsProvider, *, counters: TaskCounters = sms_counters
    ) -> TaskFactory:
        """A :class:`~apitask.outbox.TaskRegistry` factory for the ``"sms."`` prefix.

        A payload that is not a valid text, or whose purpose does not match the
        stored type, raises ``ValueError``: the registry makes it a decode
        error and the worker dead-letters the job (retrying cannot repair it).
        """

        def build(type: str, payload: Mapping[str, JSONValue]) -> Task:
            data = payload.get("sms")
            if not isinstance(data, dict):
                raise ValueError(f"stored text task {type!r} has no 'sms' object in its payload")
            task = cls(TextMessage.from_dict(data), provider, counters=counters)
            if task.type != type:
                raise ValueError(f"stored text task {type!r} holds a {task.type!r} text")
            return task

        return build

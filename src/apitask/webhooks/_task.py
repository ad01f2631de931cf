"""One webhook as an apitask task: runnable anywhere, storable in the outbox.

A :class:`WebhookTask` carries the :class:`Webhook` (URL, id, body), never
a secret: the client that signs is given to it by whoever runs it (the
registry's factory in an outbox worker). Its failures are logged with the
webhook's name, host and id (never the body) and counted, whoever runs it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from .._counters import Outcome, TaskCounters
from .._exceptions import TransientError
from ._errors import InvalidWebhookError
from ._webhook import Webhook

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._types import JSONValue, Task
    from ..outbox._registry import TaskFactory

__all__ = ["TASK_PREFIX", "WebhookClient", "WebhookTask", "webhook_counters"]

logger = logging.getLogger("apitask.webhooks")

TASK_PREFIX = "webhook."
"""What every webhook task's type starts with: ``"webhook.<name>"``."""

webhook_counters = TaskCounters()
"""Webhook outcomes in this process, keyed by webhook name (``"send-email"``).

``SUCCEEDED`` counts webhooks the receiver accepted; ``FAILED`` counts
attempts that raised, in the background or inline.
"""


class WebhookClient(Protocol):
    """Something that delivers a :class:`Webhook` once (signing it), or raises."""

    async def send(self, webhook: Webhook, /) -> object:
        """Deliver ``webhook``; raise a :class:`~apitask.webhooks.WebhookError` if not."""
        ...


class WebhookTask:
    """Deliver one :class:`Webhook` through a :class:`WebhookClient`, as an apitask task.

    It is a :class:`~apitask.DurableTask`: ``type`` is ``"webhook.<name>"``,
    ``payload()`` is ``{"webhook": ...}`` (name, URL, id and body: no
    secret), and :meth:`factory` rebuilds it in an outbox worker or from a
    pool's spill. Every attempt reuses the webhook's id.

    A failing attempt is logged at ERROR on the ``apitask.webhooks`` logger
    with the name, the receiver's host and the webhook id, counted as
    ``FAILED`` and re-raised unchanged: a
    :class:`~apitask.webhooks.TransientWebhookError` is retried by a pool
    or an outbox, anything else is final.

    Args:
        webhook: what to deliver.
        client: what delivers it (an :class:`~apitask.webhooks.HTTPWebhookClient`).
        counters: where outcomes are counted, by webhook name.
    """

    __slots__ = ("client", "counters", "type", "webhook")

    def __init__(
        self,
        webhook: Webhook,
        client: WebhookClient,
        *,
        counters: TaskCounters = webhook_counters,
    ) -> None:
        self.webhook = webhook
        self.client = client
        self.counters = counters
        self.type = TASK_PREFIX + webhook.name

    def __repr__(self) -> str:
        return f"<WebhookTask {self.type} {self.webhook.id} to {self.webhook.host}>"

    def payload(self) -> Mapping[str, JSONValue]:
        """The stored form: ``{"webhook": webhook.to_dict()}``."""
        return {"webhook": self.webhook.to_dict()}

    async def run(self) -> None:
        """Deliver the webhook; log, count and re-raise a failure."""
        webhook = self.webhook
        try:
            await self.client.send(webhook)
        except Exception as exc:
            self.counters.add(webhook.name, Outcome.FAILED)
            logger.error(
                "webhook: %s %s to %s not delivered (%s): %s",
                webhook.name,
                webhook.id,
                webhook.host,
                "transient, may be retried" if isinstance(exc, TransientError) else "final",
                exc,
                extra={
                    "action": "webhook",
                    "webhook": webhook.name,
                    "webhook_id": webhook.id,
                    "host": webhook.host,
                    "task_type": self.type,
                },
            )
            raise
        self.counters.add(webhook.name, Outcome.SUCCEEDED)

    @classmethod
    def factory(
        cls, client: WebhookClient, *, counters: TaskCounters = webhook_counters
    ) -> TaskFactory:
        """A :class:`~apitask.outbox.TaskRegistry` factory that rebuilds webhook tasks.

        ``registry.register("webhook.send-email", WebhookTask.factory(client))``
        makes an outbox worker deliver every stored ``send-email`` webhook
        through ``client``, which holds the secrets; register one factory per
        webhook name whose secrets differ.

        The factory raises :class:`~apitask.webhooks.InvalidWebhookError` when
        the payload has no webhook object, when it fails its checks again, or
        when the stored type does not match its name; the worker then
        dead-letters the job with the reason.
        """

        def build(type: str, payload: Mapping[str, JSONValue]) -> Task:
            data = payload.get("webhook")
            if not isinstance(data, dict):
                raise InvalidWebhookError(
                    f"stored webhook task {type!r} has no 'webhook' object in its payload"
                )
            task = cls(Webhook.from_dict(data), client, counters=counters)
            if task.type != type:
                raise InvalidWebhookError(
                    f"stored webhook task {type!r} holds a webhook named {task.webhook.name!r}"
                )
            return task

        return build

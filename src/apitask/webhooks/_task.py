"""One webhook as an apitask task: runnable anywhere, storable in the outbox.

A :class:`WebhookTask` carries the :class:`Webhook` (URL, id, body), never
a secret: the client that signs is given to it by whoever runs it (the
registry's factory in an outbox worker). Its failures are logged with the
webhook's name, host and id (never the body) and counted, whoever runs it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from .._counters import TaskCounters
from .._delivery import DeliveryTask
from ._errors import InvalidWebhookError
from ._webhook import Webhook

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._types import JSONValue

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


class WebhookTask(DeliveryTask[Webhook, WebhookClient]):
    """Deliver one :class:`Webhook` through a :class:`WebhookClient`, as an apitask task.

    A :class:`~apitask.DeliveryTask` (so a :class:`~apitask.DurableTask`):
    ``type`` is ``"webhook.<name>"``, ``payload()`` is ``{"webhook": ...}``
    (name, URL, id and body: no secret), and :meth:`factory` rebuilds it in
    an outbox worker or from a pool's spill. Every attempt reuses the
    webhook's id.

    A failing attempt is logged at ERROR on the ``apitask.webhooks`` logger
    with the name, the receiver's host and the webhook id, counted as
    ``FAILED`` and re-raised unchanged: a
    :class:`~apitask.webhooks.TransientWebhookError` is retried by a pool
    or an outbox, anything else is final.

    ``registry.register("webhook.send-email", WebhookTask.factory(client))``
    makes an outbox worker deliver every stored ``send-email`` webhook through
    ``client``, which holds the secrets; register one factory per webhook name
    whose secrets differ. The factory raises
    :class:`~apitask.webhooks.InvalidWebhookError` when the payload has no
    webhook object, when it fails its checks again, or when the stored type
    does not match its name; the worker then dead-letters the job.

    Args:
        webhook: what to deliver.
        client: what delivers it (an :class:`~apitask.webhooks.HTTPWebhookClient`).
        counters: where outcomes are counted, by webhook name.
    """

    type_prefix = TASK_PREFIX
    payload_key = "webhook"
    default_counters = webhook_counters
    channel = "webhook"
    verb = "delivered"
    logger = logger
    invalid_error = InvalidWebhookError

    __slots__ = ()

    def __init__(
        self,
        webhook: Webhook,
        client: WebhookClient,
        *,
        counters: TaskCounters = webhook_counters,
    ) -> None:
        super().__init__(webhook, client, counters=counters)

    @property
    def webhook(self) -> Webhook:
        """The webhook this task delivers."""
        return self.item

    @property
    def client(self) -> WebhookClient:
        """What delivers it (and signs it)."""
        return self.sender

    @property
    def label(self) -> str:
        """The webhook's name (``"send-email"``)."""
        return self.item.name

    @classmethod
    def decode(cls, data: Mapping[str, JSONValue]) -> Webhook:
        """:meth:`Webhook.from_dict`: the stored webhook, checked again."""
        return Webhook.from_dict(data)

    def describe(self) -> str:
        """``"send-sms <id> to hooks.example.com"``: the host, not the URL or body."""
        return f"{self.item.name} {self.item.id} to {self.item.host}"

    def log_fields(self) -> dict[str, str]:
        """The webhook's name, id and the receiver's host."""
        webhook = self.item
        return {"webhook": webhook.name, "webhook_id": webhook.id, "host": webhook.host}

    def held(self) -> str:
        """The stored webhook's name, when it does not match the stored task type."""
        return f"a webhook named {self.item.name!r}"

    def __repr__(self) -> str:
        return f"<WebhookTask {self.type} {self.item.id} to {self.item.host}>"

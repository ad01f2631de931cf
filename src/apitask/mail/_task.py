"""One mail as an apitask task: runnable anywhere, storable in the outbox.

A :class:`MailTask` carries the final :class:`Message`, so wherever it runs
(in the request's scope, on a worker pool, in an outbox worker an hour
later) it sends the same bytes with the same Message-ID. Its failures are
logged with the mail type and the recipient's domain (never the address or
the body) and counted, whoever runs it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._counters import TaskCounters
from .._delivery import DeliveryTask
from ._errors import InvalidMessageError
from ._message import Message

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._types import JSONValue
    from ._client import MailClient

__all__ = ["MailTask", "log_fields", "mail_counters"]

logger = logging.getLogger("apitask.mail")

mail_counters = TaskCounters()
"""Mail outcomes in this process, keyed by mail type (``"recovery"``), not task type.

``SUCCEEDED`` counts mails delivered (handed to the server, or dropped on
purpose by a no-op client); ``FAILED`` counts send attempts that raised, in
the background or inline, and addresses a validating client refused: GoTrue's
``global_auth_email_send_errors_total``, background failures included
(docs/mail.md has the mapping).
"""


def log_fields(message: Message, **more: str) -> dict[str, str]:
    """The ``extra`` fields of a log record about ``message``: never the address or body."""
    return {
        "action": "mail",
        "mail_type": message.type,
        "recipient_domain": message.domain,
        "message_id": message.message_id,
        **more,
    }


class MailTask(DeliveryTask[Message, "MailClient"]):
    """Send one :class:`Message` through a :class:`MailClient`, as an apitask task.

    A :class:`~apitask.DeliveryTask` (so a :class:`~apitask.DurableTask`):
    ``type`` is ``"mailer.<message type>"`` (GoTrue's task name),
    ``payload()`` is ``{"message": ...}``, and :meth:`factory` rebuilds it in
    an outbox worker or from a pool's spill.

    A failing send is logged at ERROR on the ``apitask.mail`` logger with the
    mail type, the recipient's domain and the Message-ID, counted as
    ``FAILED``, and re-raised unchanged, so the runner still sees it: a
    :class:`~apitask.mail.TransientMailError` is retried by a pool or an
    outbox, anything else is final.

    ``MailTask.factory(client, counters=...)`` raises
    :class:`~apitask.mail.InvalidMessageError` when the payload has no message
    object, when the message fails its checks again, or when the stored type
    does not match the message's type; the worker dead-letters such a job.

    Args:
        message: the mail to send.
        client: what sends it (an SMTP client, a no-op client...).
        counters: where outcomes are counted, by mail type.
    """

    type_prefix = "mailer."
    payload_key = "message"
    default_counters = mail_counters
    channel = "mail"
    logger = logger
    invalid_error = InvalidMessageError

    __slots__ = ()

    def __init__(
        self,
        message: Message,
        client: MailClient,
        *,
        counters: TaskCounters = mail_counters,
    ) -> None:
        super().__init__(message, client, counters=counters)

    @property
    def message(self) -> Message:
        """The mail this task sends."""
        return self.item

    @property
    def client(self) -> MailClient:
        """What sends it."""
        return self.sender

    @property
    def label(self) -> str:
        """The mail type (``"recovery"``)."""
        return self.item.type

    @classmethod
    def decode(cls, data: Mapping[str, JSONValue]) -> Message:
        """:meth:`Message.from_dict`: the stored message, checked again."""
        return Message.from_dict(data)

    def describe(self) -> str:
        """``"recovery mail to a recipient at example.org"``: the domain, not the address."""
        return f"{self.item.type} mail to a recipient at {self.item.domain}"

    def log_fields(self) -> dict[str, str]:
        """The mail type, the recipient's domain and the Message-ID (:func:`log_fields`)."""
        return log_fields(self.item)

    def held(self) -> str:
        """The stored message's type, when it does not match the stored task type."""
        return f"a message of type {self.item.type!r} (task type {self.type!r})"

    def __repr__(self) -> str:
        return f"<MailTask {self.type} to a recipient at {self.item.domain}>"

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

from .._counters import Outcome, TaskCounters
from .._exceptions import TransientError
from ._errors import InvalidMessageError
from ._message import Message

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._types import JSONValue, Task
    from ..outbox._registry import TaskFactory
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


class MailTask:
    """Send one :class:`Message` through a :class:`MailClient`, as an apitask task.

    It is a :class:`~apitask.DurableTask`: ``type`` is ``"mailer.<message
    type>"`` (GoTrue's task name), ``payload()`` is ``{"message": ...}``, and
    :meth:`factory` rebuilds it in an outbox worker or from a pool's spill.

    A failing send is logged at ERROR on the ``apitask.mail`` logger with the
    mail type, the recipient's domain and the Message-ID, counted as
    ``FAILED``, and re-raised unchanged, so the runner still sees it: a
    :class:`~apitask.mail.TransientMailError` is retried by a pool or an
    outbox, anything else is final.

    Args:
        message: the mail to send.
        client: what sends it (an SMTP client, a no-op client...).
        counters: where outcomes are counted, by mail type.
    """

    __slots__ = ("client", "counters", "message", "type")

    def __init__(
        self,
        message: Message,
        client: MailClient,
        *,
        counters: TaskCounters = mail_counters,
    ) -> None:
        self.message = message
        self.client = client
        self.counters = counters
        self.type = f"mailer.{message.type}"

    def __repr__(self) -> str:
        return f"<MailTask {self.type} to a recipient at {self.message.domain}>"

    def payload(self) -> Mapping[str, JSONValue]:
        """The stored form: ``{"message": message.to_dict()}``."""
        return {"message": self.message.to_dict()}

    async def run(self) -> None:
        """Send the message; log, count and re-raise a failure."""
        message = self.message
        try:
            await self.client.send(message)
        except Exception as exc:
            self.counters.add(message.type, Outcome.FAILED)
            logger.error(
                "mail: %s mail to a recipient at %s not sent (%s): %s",
                message.type,
                message.domain,
                "transient, may be retried" if isinstance(exc, TransientError) else "final",
                exc,
                extra=log_fields(message, task_type=self.type),
            )
            raise
        self.counters.add(message.type, Outcome.SUCCEEDED)

    @classmethod
    def factory(cls, client: MailClient, *, counters: TaskCounters = mail_counters) -> TaskFactory:
        """A :class:`~apitask.outbox.TaskRegistry` factory that rebuilds mail tasks.

        ``registry.register_prefix("mailer.", MailTask.factory(smtp))`` makes
        an outbox worker send every stored mail through ``smtp``.

        The factory raises :class:`~apitask.mail.InvalidMessageError` when
        the payload has no message object, when the message fails its checks
        again, or when the stored type does not match the message's type.
        The registry turns that into a ``JobDecodeError``, and the worker
        moves the job to the dead-letter state with the reason: retrying
        cannot repair a stored payload.
        """

        def build(type: str, payload: Mapping[str, JSONValue]) -> Task:
            data = payload.get("message")
            if not isinstance(data, dict):
                raise InvalidMessageError(
                    f"stored mail task {type!r} has no 'message' object in its payload"
                )
            task = cls(Message.from_dict(data), client, counters=counters)
            if task.type != type:
                raise InvalidMessageError(
                    f"stored mail task {type!r} holds a message of type "
                    f"{task.message.type!r} (task type {task.type!r})"
                )
            return task

        return build

"""One delivery as a durable task: the shape mail, webhooks and texts share.

A delivery task carries one finished *item* (a rendered mail, a webhook with
its id, a text) and hands it to a *sender* (an SMTP client, an HTTP client, an
SMS provider). What every channel needs, whoever runs the task (the request's
scope, a pool, an outbox worker an hour later), is written here once:

- ``type`` is ``<prefix><label>`` (``"mailer.recovery"``), and ``payload()`` is
  ``{<payload key>: item.to_dict()}``;
- :meth:`DeliveryTask.factory` rebuilds the task from that payload for a
  :class:`~apitask.outbox.TaskRegistry`, rejecting a payload that lost its
  item or whose item no longer matches the stored type (the outbox then
  dead-letters it: retrying cannot repair a stored payload);
- :meth:`DeliveryTask.run` counts each outcome under the label, and logs a
  failure at ERROR with what the channel chooses to show (a domain, a host,
  a masked number: never the item itself), then re-raises it unchanged so
  the runner classifies it (a :class:`~apitask.TransientError` is retried
  with backoff, honouring its ``retry_after``; anything else is final).

The runners do the rest for every task alike: the outbox stores the request
id beside the payload, retries, dead-letters, and erases the payload once the
task succeeded; the pool retries and spills. A channel only says what its item
is, how it is labelled and decoded, and what its logs may show.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from ._counters import Outcome, TaskCounters
from ._exceptions import TransientError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._types import JSONValue, Task
    from .outbox._registry import TaskFactory

__all__ = ["DeliveryTask", "Storable"]


class Storable(Protocol):
    """An item a :class:`DeliveryTask` can store: it has a JSON form."""

    def to_dict(self) -> dict[str, JSONValue]:
        """The item as JSON-ready data; a channel's ``decode`` reads it back."""
        ...


class _Sends(Protocol):
    async def send(self, item: Any, /) -> object: ...


ItemT = TypeVar("ItemT", bound=Storable)
SenderT = TypeVar("SenderT", bound=_Sends)


class DeliveryTask(ABC, Generic[ItemT, SenderT]):
    """Deliver one item through a sender, as a durable apitask task.

    Subclass it once per channel; the subclass sets the class attributes below
    and implements :attr:`label` and :meth:`decode`. The result is an
    :class:`~apitask.DurableTask` that any runner accepts, and whose
    :meth:`factory` an outbox registry uses to rebuild it::

        class PushTask(DeliveryTask[Push, PushClient]):
            type_prefix = "push."
            payload_key = "push"
            channel = "push"
            default_counters = TaskCounters()

            @property
            def label(self) -> str:
                return self.item.topic

            @classmethod
            def decode(cls, data):
                return Push.from_dict(data)

        registry.register_prefix("push.", PushTask.factory(client))

    Class attributes:
        type_prefix: what every ``type`` of the channel starts with (``"mailer."``).
        payload_key: the one key of ``payload()`` (``"message"``).
        default_counters: where outcomes are counted when the caller passes none.
        channel: a word for logs: their prefix and their ``action`` field.
        noun: what the item is called in messages (``"text"``); the channel by default.
        verb: what failed, in ``"... not <verb>"``: ``"sent"`` by default.
        logger: where failures are logged (``apitask.delivery`` by default).
        invalid_error: what :meth:`factory` raises on a bad payload
            (``ValueError`` by default; a channel's own subclass of it reads better).

    Args:
        item: what to deliver; it has a ``to_dict()``.
        sender: what delivers it: ``await sender.send(item)``.
        counters: where outcomes are counted, by label; ``default_counters`` if omitted.
    """

    type_prefix: ClassVar[str]
    payload_key: ClassVar[str]
    default_counters: ClassVar[TaskCounters]
    channel: ClassVar[str] = "delivery"
    noun: ClassVar[str | None] = None
    verb: ClassVar[str] = "sent"
    logger: ClassVar[logging.Logger] = logging.getLogger("apitask.delivery")
    invalid_error: ClassVar[type[Exception]] = ValueError

    __slots__ = ("counters", "item", "sender", "type")

    def __init__(
        self, item: ItemT, sender: SenderT, *, counters: TaskCounters | None = None
    ) -> None:
        self.item = item
        self.sender = sender
        self.counters = self.default_counters if counters is None else counters
        self.type = self.type_prefix + self.label

    @property
    @abstractmethod
    def label(self) -> str:
        """The item's low-cardinality name: ``type``'s suffix and the counters' key."""

    @classmethod
    @abstractmethod
    def decode(cls, data: Mapping[str, JSONValue]) -> ItemT:
        """Rebuild the item from its ``to_dict()`` form, checking it again; raise if bad."""

    def describe(self) -> str:
        """The item as a failure's log line names it: never an address, body or secret.

        The label by default; channels add what helps an operator (a domain, a host).
        """
        return self.label

    def log_fields(self) -> dict[str, str]:
        """More ``extra`` fields for log records (``action`` and ``task_type`` are given)."""
        return {}

    def held(self) -> str:
        """What a stored item whose type does not match holds, for the factory's error."""
        return f"a {self.type!r} {self._noun()}"

    def delivered(self, result: object) -> None:
        """Called after a success with what ``sender.send`` returned; nothing by default."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type}>"

    def payload(self) -> Mapping[str, JSONValue]:
        """The stored form: ``{payload_key: item.to_dict()}``."""
        return {self.payload_key: self.item.to_dict()}

    async def run(self) -> None:
        """Deliver the item; count the outcome; log and re-raise a failure."""
        try:
            result = await self.sender.send(self.item)
        except Exception as exc:
            self.counters.add(self.label, Outcome.FAILED)
            self.logger.error(
                "%s: %s not %s (%s): %s",
                self.channel,
                self.describe(),
                self.verb,
                "transient, may be retried" if isinstance(exc, TransientError) else "final",
                exc,
                extra=self._extra(),
            )
            raise
        self.counters.add(self.label, Outcome.SUCCEEDED)
        self.delivered(result)

    def _extra(self) -> dict[str, str]:
        return {"action": self.channel, **self.log_fields(), "task_type": self.type}

    @classmethod
    def _noun(cls) -> str:
        return cls.channel if cls.noun is None else cls.noun

    @classmethod
    def factory(cls, sender: SenderT, /, *, counters: TaskCounters | None = None) -> TaskFactory:
        """A :class:`~apitask.outbox.TaskRegistry` factory that rebuilds this channel's tasks.

        ``registry.register_prefix(Cls.type_prefix, Cls.factory(sender))``
        makes an outbox worker deliver every stored item through ``sender``.

        The factory raises ``invalid_error`` when the payload has no
        ``payload_key`` object or when the stored type does not match the
        item's label, and lets :meth:`decode`'s error through; the registry
        turns either into a ``JobDecodeError`` and the worker dead-letters
        the job with the reason.
        """
        if counters is None:
            counters = cls.default_counters

        def build(type: str, payload: Mapping[str, JSONValue]) -> Task:
            data = payload.get(cls.payload_key)
            if not isinstance(data, dict):
                raise cls.invalid_error(
                    f"stored {cls._noun()} task {type!r} has no {cls.payload_key!r} "
                    "object in its payload"
                )
            task = cls(cls.decode(data), sender, counters=counters)
            if task.type != type:
                raise cls.invalid_error(f"stored {cls._noun()} task {type!r} holds {task.held()}")
            return task

        return build

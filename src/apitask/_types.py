"""The small protocols the parts of apitask meet at."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ASGIApp",
    "DurableTask",
    "JSONValue",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "Task",
    "TaskSink",
    "WSGIApp",
]

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]

# The ASGI types, as Starlette spells them (starlette/types.py): the library
# core imports no web framework, so it carries its own four aliases.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# PEP 3333's application, loosely: (environ, start_response) -> body.
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@runtime_checkable
class Task(Protocol):
    """A unit of background work.

    ``type`` is a low-cardinality name (``"mailer.recovery"``, not a user id):
    it labels logs and metrics.
    """

    type: str

    async def run(self) -> None:
        """Do the work. Raise to report failure."""


@runtime_checkable
class DurableTask(Task, Protocol):
    """A task that can be stored and rebuilt elsewhere (outbox, pool spill).

    ``payload()`` returns JSON-serialisable data from which a factory
    registered under ``type`` rebuilds an equivalent task.
    """

    def payload(self) -> Mapping[str, JSONValue]:
        """Return the data that rebuilds this task."""


class TaskSink(Protocol):
    """Somewhere a request scope can hand its tasks to instead of running them.

    A :class:`~apitask.WorkerPool` is one; an outbox bound to the caller's
    transaction is another. ``submit`` must not block the event loop.
    """

    async def submit(self, task: Task) -> None:
        """Accept ``task`` for later execution, or raise :class:`TaskError`."""

    def submit_sync(self, task: Task) -> None:
        """Like :meth:`submit`, from a thread with no running event loop (WSGI)."""

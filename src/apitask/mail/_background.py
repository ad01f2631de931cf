"""The background client: GoTrue's ``backgroundMailClient``, without the silence."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _scope, _sync
from ._task import MailTask, mail_counters

if TYPE_CHECKING:
    from .._counters import TaskCounters
    from ._client import MailClient
    from ._message import Message

__all__ = ["BackgroundClient"]


class BackgroundClient:
    """Hand every mail to :func:`apitask.run` as a :class:`MailTask`.

    Where the mail is sent is decided by the request scope the call happens
    in, never by the caller:

    * in an open request scope (``apitask.scope()``, the ASGI/WSGI
      ``TaskMiddleware``): concurrently, and ``send`` returns at once; the
      scope's wait (the end of the response) covers the send;
    * in a scope bound to a sink: submitted to it, a
      :class:`~apitask.WorkerPool` (which retries transient failures with
      backoff) or an outbox (durable, retried by its workers);
    * outside any scope: inline, and a failure is raised to the caller, as
      if there were no background client.

    A failing send is never silent: :class:`MailTask` logs it at ERROR with
    the mail type and recipient domain and counts it, in the background
    too (GoTrue's error counter misses background failures).

    Args:
        client: the client that delivers (an SMTP or no-op client).
        counters: where outcomes are counted, by mail type.
    """

    __slots__ = ("client", "counters")

    def __init__(self, client: MailClient, *, counters: TaskCounters = mail_counters) -> None:
        self.client = client
        self.counters = counters

    def task(self, message: Message) -> MailTask:
        """The task that sends ``message`` through the wrapped client."""
        return MailTask(message, self.client, counters=self.counters)

    async def send(self, message: Message) -> None:
        """Hand ``message`` over; see the class docstring for where it goes.

        Raises:
            TaskError: the scope was already waited, or the sink refused the
                mail (a closed pool, a full queue with policy ``"reject"``):
                the mail was not sent.
            MailError: outside a scope, the send failed.
        """
        await _scope.run(self.task(message))

    def send_sync(self, message: Message) -> None:
        """:meth:`send` for sync code (a WSGI view), through :func:`apitask.run_sync`."""
        _sync.run_sync(self.task(message))

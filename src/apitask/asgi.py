"""ASGI middleware: one request scope per HTTP request.

Works under any ASGI framework (Starlette, FastAPI, Litestar, Quart)::

    from apitask.asgi import TaskMiddleware

    app.add_middleware(TaskMiddleware)                        # Starlette / FastAPI
    app = TaskMiddleware(app, wait="after_response")          # any ASGI app
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._middleware import ScopeMiddleware
from ._request_id import request_id_from_header
from ._scope import RequestScope, activate, current_scope, deactivate
from ._types import ASGIApp

if TYPE_CHECKING:
    from ._types import Message, Receive, Scope, Send

__all__ = ["TaskMiddleware"]

# The messages that can end an HTTP response, with the key that says "more
# follows" (pathsend is always the last one).
_ENDING: dict[str, str | None] = {
    "http.response.body": "more_body",
    "http.response.zerocopy": "more_body",
    "http.response.pathsend": None,
    "http.response.trailers": "more_trailers",
}


class TaskMiddleware(ScopeMiddleware[ASGIApp]):
    """Open a request scope around every HTTP request and wait for its tasks.

    Lifespan and websocket connections pass through untouched. The handler
    raising, or the client going away, still waits for the tasks: they are
    never cancelled on the request's behalf (only a ``timeout`` cancels).

    Args:
        app: the ASGI application to wrap.
        wait: when the tasks are waited for.
            ``"before_response"`` (default): the message that ends the
            response is held until the tasks are done. While a task runs,
            the start is held until the app's next message (so it goes out
            with the end of a one-message body, or with the first chunk of
            a streaming one; an empty chunk with ``more_body=True`` flushes
            it); earlier chunks go out at once. Safe where the process may
            be frozen once the response is sent (serverless).
            ``"after_response"``: the response goes out unchanged, and the
            ASGI call returns only once the tasks are done, so the server's
            graceful shutdown still waits for them.
        sink: hand every request's tasks to this
            :class:`~apitask.TaskSink` (a :class:`~apitask.WorkerPool`)
            instead: the response then waits for nothing.
        timeout: seconds to wait for the tasks at most; stragglers are then
            cancelled and reported (see :meth:`apitask.RequestScope.wait`).

    A request id comes from the ``x-request-id`` header when the client or a
    proxy sent one, else it is generated; it is in the log record of every
    failing task and in ``apitask.current_scope().request_id``. When a scope
    is already open around the middleware, the request uses it (and waits
    for it) instead of opening its own.

    Raises:
        ValueError, TypeError: an option is not usable (the message names it).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_scope = current_scope()
        token = None
        if request_scope is None:
            request_scope = RequestScope(
                request_id=_request_id(scope), sink=self.sink, loop=asyncio.get_running_loop()
            )
            token = activate(request_scope)
        try:
            if self.wait == "before_response":
                holding = _HoldingTheEnd(send, request_scope, self.timeout)
                await self.app(scope, receive, holding)
                # Still held: the app returned right after its start, with no
                # body; send it as the app did. An app that raised instead
                # loses its held start, so the server answers 500 rather than
                # cutting a started response short.
                if holding.held is not None:
                    await send(holding.held)
            else:
                await self.app(scope, receive, send)
        finally:
            try:
                # Also the path of a handler that raised or never finished
                # its response, and of a client that went away. Most requests
                # have no task left by now: close without a wait to await.
                settling = request_scope.settle(self.timeout)
                if settling is not None:
                    await settling
            finally:
                if token is not None:
                    deactivate(token)


class _HoldingTheEnd:
    """The ``send`` a before_response request's app gets: it holds the end of the response.

    While the request has a task running, the start is held too, until the
    app's next message, and then goes out right before it: status, headers
    and a one-message body leave back to back, after the wait, as they do
    when the app itself waits before answering. Sending the start one loop
    iteration before the end cost up to a third more server CPU per
    hello-world request (1.13-1.30x the floor against 0.90-1.04x held:
    bench/middleware.py, docs/core.md, "Holding the start"). With no task
    running the start goes out at once (an event stream that starts no task
    sends its headers before its first event);
    an app that wants its headers out before its first chunk anyway sends an
    empty chunk with ``more_body=True``, the ASGI way to flush. Go's
    net/http, under the seed, buffers the headers of a small response the
    same way.
    """

    __slots__ = ("held", "request_scope", "send", "timeout", "trailers")

    def __init__(self, send: Send, request_scope: RequestScope, timeout: float | None) -> None:
        self.send = send
        self.request_scope = request_scope
        self.timeout = timeout
        self.trailers = False
        self.held: Message | None = None

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.trailers = message.get("trailers", False)
            # A second start (an app's bug) is no start to hold: the first goes
            # out before it, so the server rejects it as it would unwrapped,
            # instead of the first being dropped without a word.
            if self.held is None and self.request_scope.pending:
                self.held = message
                return
        if (
            kind in _ENDING
            and not message.get(_ENDING[kind] or "", False)
            # With trailers announced, only the last trailers message ends it.
            and (not self.trailers or kind == "http.response.trailers")
        ):
            settling = self.request_scope.settle(self.timeout)
            if settling is not None:
                await settling
        start = self.held
        if start is not None:
            self.held = None
            await self.send(start)
        await self.send(message)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return request_id_from_header(value.decode("latin-1"))
    return request_id_from_header(None)

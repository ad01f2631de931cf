"""WSGI middleware: one request scope per HTTP request, for Flask, Django and friends::

    from apitask.wsgi import TaskMiddleware

    app.wsgi_app = TaskMiddleware(app.wsgi_app)    # Flask
    application = TaskMiddleware(application)      # Django (wsgi.py)

Handlers hand tasks over with :func:`apitask.run_sync`. Async tasks run on
apitask's background event loop (one per process); sync functions run in a
worker thread of that loop; the request's thread only waits for them.

Bound to an outbox (``TaskMiddleware(app, sink=outbox.sink)``), each task is
written as a durable job instead: in the handler's own transaction inside
``with outbox.transaction_sync(conn):``, else in one of the outbox's own
(see :meth:`apitask.outbox.Outbox.transaction_sync`).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from ._middleware import ScopeMiddleware
from ._request_id import request_id_from_header
from ._scope import RequestScope, activate, current_scope, deactivate
from ._types import WSGIApp

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from _typeshed.wsgi import StartResponse, WSGIEnvironment


__all__ = ["TaskMiddleware"]


class _End(enum.Enum):
    END = enum.auto()


_END = _End.END  # what _Body._next returns once the app's body is exhausted


class TaskMiddleware(ScopeMiddleware[WSGIApp]):
    """Open a request scope around every request and wait for its tasks.

    Args:
        app: the WSGI application to wrap.
        wait: ``"before_response"`` (default): the last chunk of the body is
            withheld until the tasks are done (earlier chunks of a streamed
            body go out one chunk late, as the last one is only known when
            the next is asked for). ``"after_response"``: the body goes out
            unchanged, and the tasks are waited for in the body's ``close()``,
            which the server calls once the response is sent.
        sink: hand every request's tasks to this :class:`~apitask.TaskSink`
            (``submit_sync``) instead: the response then waits for nothing.
        timeout: seconds to wait for the tasks at most; stragglers are then
            cancelled and reported.

    The request id comes from the ``X-Request-Id`` header, else is
    generated. The app raising, or the client going away (the server then
    closes the body early), still waits for the tasks.

    Raises:
        ValueError, TypeError: an option is not usable (the message names it).
    """

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request_scope = current_scope() or RequestScope(
            request_id=request_id_from_header(environ.get("HTTP_X_REQUEST_ID")), sink=self.sink
        )
        token = activate(request_scope)
        try:
            body = self.app(environ, start_response)
        except BaseException:
            request_scope.wait_sync(self.timeout)
            raise
        finally:
            deactivate(token)
        return _Body(body, request_scope, self.timeout, hold_last=self.wait == "before_response")


class _Body:
    """The app's response body, with the request scope current while it is produced.

    A lazy body (a generator, Flask's ``stream_with_context``) runs when the
    server iterates it, after the app returned: the scope is made current
    again around each chunk so ``run_sync`` works there too.
    """

    __slots__ = ("_body", "_hold_last", "_request_scope", "_timeout")

    def __init__(
        self,
        body: Iterable[bytes],
        request_scope: RequestScope,
        timeout: float | None,
        *,
        hold_last: bool,
    ) -> None:
        self._body = body
        self._request_scope = request_scope
        self._timeout = timeout
        self._hold_last = hold_last

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._body)
        if not self._hold_last:
            while (chunk := self._next(chunks)) is not _END:
                yield chunk
            return
        # One chunk of look-ahead: a chunk is the last one when no next one comes.
        held = self._next(chunks)
        if held is not _END:
            while (chunk := self._next(chunks)) is not _END:
                yield held
                held = chunk
        self._request_scope.wait_sync(self._timeout)
        if held is not _END:
            yield held

    def _next(self, chunks: Iterator[bytes]) -> bytes | _End:
        token = activate(self._request_scope)
        try:
            return next(chunks, _END)
        finally:
            deactivate(token)

    def close(self) -> None:
        """Close the app's body, then wait for the tasks (if not done already)."""
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                token = activate(self._request_scope)
                try:
                    close()
                finally:
                    deactivate(token)
        finally:
            self._request_scope.wait_sync(self._timeout)

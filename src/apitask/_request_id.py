"""Request ids: the one a request is given, and the one a task runs for.

A middleware gives every request an id (:func:`request_id_from_header`):
the ``X-Request-Id`` a client or proxy sent, else a fresh one. The id
travels with the request's scope. A worker pool runs its tasks in a
context of its own, without the (soon closed) scope, so it carries only
the id: read at submit, set in :data:`task_request_id` around the run.
Wherever a task runs, :func:`current_request_id` finds it.
"""

from __future__ import annotations

import contextvars
import itertools
import os

from ._scope import current_scope

__all__ = ["current_request_id", "request_id_from_header", "task_request_id"]

task_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "apitask_task_request_id", default=None
)
"""The id of the request that submitted the pooled task now running."""


def current_request_id() -> str | None:
    """The id of the request this code runs for: its scope's, or the one a pool carried.

    None outside any request (a task submitted without a scope, a script).
    """
    scope = current_scope()
    if scope is not None:
        return scope.request_id
    return task_request_id.get()


def request_id_from_header(header: str | None) -> str:
    """The request id a client or proxy sent, if it is safe to log; else a fresh one.

    The header is the client's to choose: one with control characters (a
    forged log line) or of absurd length is replaced, not logged.
    """
    if header and len(header) <= 200 and header.isprintable():
        return header
    return f"{_id_prefix}{next(_id_counter):016x}"


# A fresh id is a per-process random prefix and a counter: unique without a
# getrandom() system call per request (ids need to be unique, not secret).
# A forked child must not repeat its parent's ids, so it draws a new prefix.
_id_prefix = os.urandom(8).hex()
_id_counter = itertools.count()


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(8).hex()
    _id_counter = itertools.count()


os.register_at_fork(after_in_child=_new_id_prefix)

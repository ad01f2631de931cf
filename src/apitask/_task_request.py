"""The request id a task runs for, wherever it runs.

In a request scope the id is the scope's. A worker pool runs its tasks in
a context of its own, without the (soon closed) scope, so it carries only
the id: read at submit, set in :data:`task_request_id` around the run.
"""

from __future__ import annotations

import contextvars

from ._scope import current_scope

__all__ = ["current_request_id", "task_request_id"]

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

"""``run_sync``: the call site for sync code (WSGI apps, sync endpoints, scripts)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._background import background_loop, running_loop
from ._exceptions import TaskError
from ._function import FunctionTask
from ._scope import current_scope

if TYPE_CHECKING:
    from ._types import Task

__all__ = ["run_sync"]


def run_sync(task: Task) -> None:
    """Hand ``task`` over from sync code; :func:`apitask.run` for threads.

    * Inside an open scope (a WSGI request under
      :class:`apitask.wsgi.TaskMiddleware`, or a sync endpoint of an ASGI
      app): start the task on the scope's event loop and return once it is
      registered, without waiting for it to run. Sync functions run in a
      worker thread of that loop, async ones on the loop.
    * Inside a scope bound to a sink: ``sink.submit_sync(task)``.
    * Outside any scope: run it to completion and raise its error. A sync
      :func:`apitask.task` function runs in the calling thread; anything
      async runs on apitask's background loop while this thread waits.

    Raises:
        TaskError: the scope was already waited, the sink refused the task,
            or, outside a scope, an async task was handed over from a thread
            whose event loop is running (it cannot be waited for there
            without blocking that loop: ``await apitask.run(task)``).
    """
    current = current_scope()
    if current is None:
        _run_inline(task)
    elif current.sink is not None:
        current.ensure_open(task)
        current.sink.submit_sync(task)
    else:
        loop = running_loop()
        if loop is not None and current.loop in (loop, None):
            current.start(task)  # sync code called on the scope's loop: no hop
        else:
            current.start_threadsafe(task).result()


def _run_inline(task: Task) -> None:
    if isinstance(task, FunctionTask) and not task.is_async:
        task.run_sync()
        return
    if running_loop() is not None:
        raise TaskError(
            f"cannot run async task {task.type!r} inline from a thread whose event loop is "
            "running (it would block that loop): await apitask.run(task) instead"
        )
    asyncio.run_coroutine_threadsafe(task.run(), background_loop()).result()

"""Blocking work (the ORM, a sync mail backend) run off the worker's event loop.

Django's connections belong to the thread that opened them. Each call here
runs in one of a fixed set of threads, between two ``close_old_connections()``
(what Django does around each request): a connection broken or older than
``CONN_MAX_AGE`` is closed before the task touches the ORM and after it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from django.db import close_old_connections

from ._settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["in_thread", "shutdown_threads", "start_threads"]

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def start_threads(count: int | None = None) -> ThreadPoolExecutor:
    """The threads, started with ``count`` of them (default ``APITASK["THREADS"]``)
    unless they run already."""
    global _executor
    with _lock:
        if _executor is None:
            size = count or load_settings().threads
            _executor = ThreadPoolExecutor(size, thread_name_prefix="apitask-django")
        return _executor


def _call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


async def in_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` in one of apitask's threads and return its result.

    Use it in a durable task's ``run()`` for anything that touches the ORM::

        async def run(self) -> None:
            await in_thread(mark_welcomed, self.user_id)

    The threads (``APITASK["THREADS"]``, 10 by default) keep their database
    connections between calls, as Django's request threads do, and close
    the ones that are broken or past ``CONN_MAX_AGE``. The caller's context
    (the job's request id) is seen by ``fn``.
    """
    context = contextvars.copy_context()
    call = functools.partial(_call, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(
        start_threads(), functools.partial(context.run, call)
    )


def shutdown_threads() -> None:
    """Stop the threads once their calls are done (the worker's exit), and QUIT
    the SMTP connections they kept. Their database connections close with the process.
    """
    from ._mail import close_backends

    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True)
    close_backends()

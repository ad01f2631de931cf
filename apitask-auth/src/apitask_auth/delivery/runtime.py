"""Where every message's task runs: one pool, one outbox, one worker for the whole service.

Mail, text messages and (later) the send hooks are the same kind of work: a
task handed to :func:`apitask.run` in the handler. Where it runs is the
delivery mode (``GOTRUE_MAILER_DELIVERY``), and this object sets it up once:

* ``inline``: nothing; no request scope, so ``apitask.run`` runs the task in
  the handler and raises its error.
* ``request``: :class:`apitask.asgi.TaskMiddleware` opens a scope per
  request; tasks run concurrently and the response waits for them
  (``before_response``, as GoTrue's middleware waits before returning).
* ``pool``: the same middleware, bound to one :class:`apitask.WorkerPool`:
  the response waits for nothing; the pool drains on shutdown, and what its
  deadline leaves is spilled to the outbox (same database).
* ``outbox``: the task is declared in the flow's transaction
  (:meth:`declared_in`): its job row commits with the user's token or not at
  all, with the request's id (the middleware, bound to the outbox, opens the
  scope that carries it).

One outbox worker runs in the process (pool and outbox modes, unless
``GOTRUE_OUTBOX_WORKER_ENABLED`` is off) and sends every stored kind: each
chain registers the task prefix it owns (``"mailer."``, ``"sms."``) with
:meth:`register` before :meth:`start`.

Order matters at both ends. :meth:`start` runs after the chains have
started (their clients exist, their prefixes are registered); :meth:`aclose`
runs before the chains close, so that what the worker and the pool still
hold is sent through clients that are still open, and what the pool's
deadline leaves is spilled to an outbox that is still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING

import apitask
from apitask import WorkerPool
from apitask.asgi import TaskMiddleware
from apitask.outbox import Outbox, TaskRegistry, open_store
from apitask_auth.config import Delivery

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask import Backoff, Task
    from apitask.outbox import TaskFactory, Worker
    from apitask_auth.config import Settings

__all__ = ["DeliveryRuntime"]

logger = logging.getLogger("apitask_auth")


class DeliveryRuntime:
    """The delivery mode's machinery, shared by every chain of the service.

    Built with the app; :meth:`start` and :meth:`aclose` run in its lifespan
    (see the module docstring for the order).

    Args:
        settings: the configuration (the mode, the pool's and worker's sizes,
            the database the outbox lives in).
        backoff: the retry policy of the pool and the in-process worker
            (apitask's default when None; the chaos tests allow more attempts).
    """

    def __init__(self, settings: Settings, *, backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.delivery = settings.delivery
        # The outbox: where outbox mode writes its jobs, and where pool mode
        # spills what its drain could not send in time (sent by an outbox worker).
        self.outbox: Outbox | None = None
        if self.delivery in {Delivery.POOL, Delivery.OUTBOX}:
            self.outbox = Outbox(open_store(settings.database.url))
        self.pool: WorkerPool | None = None
        if self.delivery is Delivery.POOL:
            self.pool = WorkerPool(
                per_cpu=settings.worker_count_per_cpu,
                queue_size=settings.worker_queue_size,
                # A full queue must not run the task inline: the handler is inside
                # the flow's transaction (on SQLite, holding the write lock). The
                # overflow becomes an outbox job in that transaction instead.
                when_full="spill",
                shutdown_timeout=settings.worker_shutdown_duration.total_seconds(),
                spill=self.outbox.sink if self.outbox is not None else None,
                backoff=backoff,
            )
        self.backoff = backoff
        self.prefixes: dict[str, TaskFactory] = {}
        self._worker: Worker | None = None
        self._worker_run: asyncio.Task[None] | None = None
        self._started = False

    @property
    def worker(self) -> Worker | None:
        """The in-process outbox worker, once started (None when there is none)."""
        return self._worker

    def register(self, prefix: str, factory: TaskFactory) -> None:
        """Let the outbox worker rebuild stored tasks whose type starts with ``prefix``.

        Each chain owns one prefix. Registering it again replaces the factory:
        a lifespan run again (tests do) starts the chains, so their clients,
        anew.

        Raises:
            RuntimeError: the runtime is running (its worker has its registry).
        """
        if self._started:
            raise RuntimeError(f"register {prefix!r} before the delivery runtime starts")
        self.prefixes[prefix] = factory

    def install(self, app: FastAPI) -> None:
        """Add the request-scope middleware the mode needs (none for ``inline``)."""
        if self.delivery is Delivery.REQUEST:
            app.add_middleware(TaskMiddleware, wait="before_response")
        elif self.pool is not None:
            app.add_middleware(TaskMiddleware, sink=self.pool)
        elif self.outbox is not None:
            # A scope per request: the job row gets the request's id, and the
            # worker that runs the task logs with it.
            app.add_middleware(TaskMiddleware, sink=self.outbox.sink)

    @contextlib.asynccontextmanager
    async def declared_in(self, connection: AsyncConnection) -> AsyncIterator[None]:
        """Tasks handed to ``apitask.run`` in this block are written in ``connection``'s
        transaction when they go to the outbox (outbox mode; a full pool's spill)."""
        if self.outbox is None:
            yield
            return
        async with self.outbox.transaction(connection):
            yield

    async def run(self, task: Task, connection: AsyncConnection) -> None:
        """``apitask.run(task)`` as the mode says, :meth:`declared_in` ``connection``.

        Raises:
            Exception: ``inline`` only: the task's own error.
            TaskError: the pool or the scope refused the task.
        """
        async with self.declared_in(connection):
            await apitask.run(task)

    async def start(self) -> None:
        """Open the outbox, start its in-process worker, then the pool."""
        self._started = True
        if self.outbox is not None:
            # The registry the worker decodes stored jobs with: what is
            # registered now (a restarted lifespan brings new clients).
            registry = TaskRegistry()
            for prefix, factory in self.prefixes.items():
                registry.register_prefix(prefix, factory)
            self.outbox.registry = registry
            await self.outbox.store.open()
            if self.settings.outbox_worker_enabled:
                self._start_worker(self.outbox)
        if self.pool is not None:
            await self.pool.start()

    def _start_worker(self, outbox: Outbox) -> None:
        self._worker = outbox.worker(
            concurrency=(os.cpu_count() or 1) * self.settings.worker_count_per_cpu,
            shutdown_timeout=self.settings.worker_shutdown_duration.total_seconds(),
            lease=self.settings.outbox_worker_lease.total_seconds(),
            backoff=self.backoff,
        )
        self._worker_run = asyncio.get_running_loop().create_task(self._worker.run())
        self._worker_run.add_done_callback(_report_worker_end)

    async def aclose(self) -> None:
        """Stop the worker, drain the pool (spilling leftovers), close the outbox."""
        if self._worker is not None and self._worker_run is not None:
            self._worker.stop()
            with contextlib.suppress(Exception):  # already logged by _report_worker_end
                await self._worker_run
        if self.pool is not None:
            # Leftovers at the deadline are spilled to the outbox (still open here).
            await self.pool.aclose()
        if self.outbox is not None:
            await self.outbox.aclose()
        self._started = False


def _report_worker_end(run: asyncio.Task[None]) -> None:
    if not run.cancelled() and (error := run.exception()) is not None:
        logger.error("the in-process outbox worker stopped: %s", error, exc_info=error)

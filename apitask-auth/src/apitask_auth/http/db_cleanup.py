"""GoTrue's database cleanup (``GOTRUE_DB_CLEANUP_ENABLED``), off the request path.

After each POST, PUT, PATCH or DELETE answered 2xx, GoTrue runs one of its
cleanup statements (:mod:`apitask_auth.storage.stale_rows`) in the request,
after the handler. Here :class:`CleanupMiddleware` hands the step, as an
apitask task, to a worker pool of its own (one worker) and returns: the
request never waits for it, and its failure is logged, never answered.

Why a pool of its own rather than the delivery pool: that one exists in
``pool`` mode only, and it spills what it holds to the outbox when its queue
is full or its drain runs out of time. A cleanup step is not worth a durable
job (a lost step is harmless: the next request does one), and it must not
take a mail's place in the queue.

At most one step is in flight in the process, and steps start at least
:data:`CLEANUP_INTERVAL` apart: a request that ends while one runs, or just
after one started, hands over nothing. So the cleanup keeps pace with the writes that
make stale rows, and an idle service does none, as GoTrue's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

import apitask
from apitask import PoolClosedError, PoolState, WorkerPool
from apitask_auth.storage.stale_rows import run_sweep, stale_row_sweeps
from apitask_auth.storage.tables import now

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from apitask_auth.config import Settings

__all__ = [
    "CLEANUP_INTERVAL",
    "CLEANUP_TIMEOUT",
    "CleanupMetrics",
    "CleanupMiddleware",
    "DatabaseCleanup",
]

logger = logging.getLogger("apitask_auth")

CLEANUP_TIMEOUT = timedelta(seconds=5)
"""How long one step may wait for locks or run (PostgreSQL), and its drain at shutdown."""

CLEANUP_INTERVAL = 0.1
"""Seconds from one step's start to the next's, at the least: GoTrue runs a step per
write; at a high write rate that is a statement per request competing with the
requests for the event loop. Ten steps a second still remove up to 1000 rows a second
(bench/db_cleanup.py: on ÷ off p50 0.95-1.01x, as its A/A control, 0.94-1.02x)."""

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class DatabaseCleanup:
    """One stale-row statement per step, in turn; at most one step at a time.

    Args:
        engine: the service's database.
        settings: the lifetimes the statements' ages derive from.
        timeout: the bound on one step (PostgreSQL) and on the drain.
        interval: the least time between two steps' starts, in seconds.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        *,
        timeout: timedelta = CLEANUP_TIMEOUT,
        interval: float = CLEANUP_INTERVAL,
    ) -> None:
        self.engine = engine
        self.interval = interval
        self._due = 0.0  # the event loop's clock: no step before it
        self.sweeps = stale_row_sweeps(settings)
        self.timeout = timeout
        self.pool = self._new_pool()
        self.removed: Counter[tuple[str, str]] = Counter()
        """Rows removed (or revoked), by (table, action)."""
        self.failed: Counter[str] = Counter()
        """Steps that failed, by table."""
        self.steps = 0
        """Steps finished (succeeded or failed)."""
        self._next = 0
        self._in_flight = False
        self._stepped = asyncio.Condition()
        self._task = apitask.task("auth.db_cleanup", self._step)

    def _new_pool(self) -> WorkerPool:
        # One worker, a queue of one: the in-flight flag keeps it empty, so
        # "reject" is never reached.
        return WorkerPool(
            workers=1,
            queue_size=1,
            when_full="reject",
            shutdown_timeout=self.timeout.total_seconds(),
        )

    async def start(self) -> None:
        """Start the pool (the app's lifespan). A lifespan that runs again (a test
        client entering the app anew) gets a new pool: a closed one cannot restart."""
        if self.pool.state is not PoolState.CREATED:
            self.pool = self._new_pool()
            self._in_flight = False
        await self.pool.start()

    async def aclose(self) -> None:
        """Let a running step finish (within the timeout), then stop the pool."""
        await self.pool.aclose()

    async def after_request(self) -> None:
        """Hand one step to the pool, unless one is in flight or the last started less
        than ``interval`` ago; never raises."""
        if self._in_flight:
            return
        clock = asyncio.get_running_loop().time()
        if clock < self._due:
            return
        self._due = clock + self.interval
        self._in_flight = True
        try:
            await self.pool.submit(self._task)
        except PoolClosedError:  # shutting down: the step is not needed
            self._in_flight = False

    async def _step(self) -> None:
        sweep = self.sweeps[self._next % len(self.sweeps)]
        self._next += 1
        try:
            count = await run_sweep(self.engine, sweep, now(), timeout=self.timeout)
        except Exception as exc:
            # As GoTrue: a warning; the next request's step takes the next statement.
            self.failed[sweep.table] += 1
            logger.warning("database cleanup of %s failed: %s", sweep.table, exc)
        else:
            self.removed[sweep.table, sweep.action] += count
            if count:
                logger.debug("database cleanup: %d rows of %s", count, sweep.table)
        finally:
            self._in_flight = False
            self.steps += 1
            async with self._stepped:
                self._stepped.notify_all()

    async def wait_steps(self, count: int) -> None:
        """Return once ``count`` steps have finished (tests, benchmarks)."""
        async with self._stepped:
            await self._stepped.wait_for(lambda: self.steps >= count)


class CleanupMiddleware:
    """Pure ASGI: after a mutating request answered 2xx, one cleanup step (GoTrue's
    ``databaseCleanup`` middleware, without the wait)."""

    def __init__(self, app: ASGIApp, cleanup: DatabaseCleanup) -> None:
        self.app = app
        self.cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        if 200 <= status < 300:
            await self.cleanup.after_request()


class CleanupMetrics(Collector):
    """``gotrue_cleanup_affected_rows_total`` (GoTrue's name) by table and action,
    and the steps that failed."""

    def __init__(self, cleanup: DatabaseCleanup) -> None:
        self.cleanup = cleanup

    def collect(self) -> Iterator[Metric]:
        """Render the counters (called on a scrape)."""
        rows = CounterMetricFamily(
            "gotrue_cleanup_affected_rows",
            "Stale rows the database cleanup removed (or revoked), by table.",
            labels=["table", "action"],
        )
        for (table, action), count in sorted(self.cleanup.removed.items()):
            rows.add_metric([table, action], count)
        yield rows
        failed = CounterMetricFamily(
            "gotrue_cleanup_failures",
            "Database cleanup steps that failed (logged), by table.",
            labels=["table"],
        )
        for table, count in sorted(self.cleanup.failed.items()):
            failed.add_metric([table], count)
        yield failed

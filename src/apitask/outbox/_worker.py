"""The worker: claim a batch, run it, write the outcomes back; drain on stop."""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import os
import secrets
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from .._backoff import Backoff, next_delay
from .._counters import Outcome, TaskCounters
from .._exceptions import TransientError
from .._request_id import task_request_id
from ._records import Finish, JobState, JobTimeoutError, OutboxError, Verdict
from ._registry import JobDecodeError

if TYPE_CHECKING:
    from types import TracebackType

    from .._types import Task
    from ._outbox import Outbox
    from ._records import Job
    from ._registry import TaskRegistry
    from ._store import Store

__all__ = ["Worker", "WorkerState", "run_worker"]

logger = logging.getLogger("apitask.outbox")

_MAX_ERROR = 2000  # characters of last_error kept: enough for a reason, not a novel
_PURGE_EVERY = 60.0  # seconds between retention sweeps


class WorkerState(enum.Enum):
    """Lifecycle of a :class:`Worker`."""

    NEW = "new"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


def _reason(exc: BaseException) -> str:
    name = type(exc).__name__
    return (f"{name}: {exc}" if str(exc) else name)[:_MAX_ERROR]


class Worker:
    """Runs the outbox's jobs: claims due ones in batches, N at a time.

    Failure policy (the core's, the worker pool's too, see
    :class:`~apitask.TransientError`): a task raising ``TransientError``, or
    running past ``job_timeout`` (:class:`JobTimeoutError`, a
    ``TransientError``), is retried after ``backoff.delay(attempt)``
    seconds, or after its ``retry_after`` when it gives one, until
    ``backoff.max_attempts`` attempts are used; any other exception (a bare
    ``TimeoutError`` included) is permanent and the job goes to the
    dead-letter state at once, with the error as ``last_error``. A job whose type is unknown or
    whose payload cannot be decoded goes there too.

    Stopping (:meth:`stop`, or SIGTERM in the CLI) stops claiming, lets the
    running jobs finish for up to ``shutdown_timeout`` seconds, then cancels
    the rest and releases their rows so another worker takes them at once.

    Args:
        store: where the jobs are.
        registry: rebuilds tasks from stored jobs.
        concurrency: jobs run at the same time.
        batch_size: jobs claimed per query (default: ``concurrency``).
        prefetch: jobs claimed ahead, held (leased, heartbeated) until a slot
            frees (default: ``batch_size``; 0: claim only for free slots). A
            busy worker then claims in batches while its slots are full,
            instead of one job per freed slot, and a freed slot starts the
            next job without a query. A stop releases the jobs held ahead
            (due again at once, their attempt not counted).
        lease: seconds a claim is valid without a heartbeat; a worker that
            dies loses its jobs to the others after this long.
        poll_interval: seconds between claims when idle (LISTEN wakes earlier).
        backoff: retry delays and the number of attempts.
        job_timeout: seconds one attempt may take (``None``: no limit).
        retention: seconds succeeded jobs are kept (0: deleted on success).
        dead_retention: seconds dead jobs are kept (``None``: until purged).
        shutdown_timeout: seconds a stop waits for running jobs.
        listen: wait for notifications (PostgreSQL LISTEN); ``False`` to
            poll only, behind a transaction-mode pooler.
        batch_window: seconds an idle worker lets new jobs gather after a
            wake-up before it claims (bigger batches, fewer transactions; 0
            claims at once).
        name: this worker's id in ``locked_by`` (default: host:pid:random).
    """

    def __init__(
        self,
        store: Store,
        registry: TaskRegistry,
        *,
        concurrency: int = 10,
        batch_size: int | None = None,
        prefetch: int | None = None,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        backoff: Backoff | None = None,
        job_timeout: float | None = None,
        retention: float = 86_400.0,
        dead_retention: float | None = None,
        shutdown_timeout: float = 30.0,
        listen: bool = True,
        batch_window: float = 0.005,
        name: str | None = None,
    ) -> None:
        for param, value in (
            ("concurrency", concurrency),
            ("batch_size", 1 if batch_size is None else batch_size),
        ):
            if value < 1:
                raise ValueError(f"{param} must be >= 1, got {value!r}")
        if prefetch is not None and prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch!r}")
        for param, number in (
            ("lease", lease),
            ("poll_interval", poll_interval),
            ("job_timeout", 1.0 if job_timeout is None else job_timeout),
        ):
            if not number > 0:
                raise ValueError(f"{param} must be > 0 seconds, got {number!r}")
        for param, number in (
            ("retention", retention),
            ("dead_retention", 0.0 if dead_retention is None else dead_retention),
            ("shutdown_timeout", shutdown_timeout),
            ("batch_window", batch_window),
        ):
            if number < 0:
                raise ValueError(f"{param} must be >= 0 seconds, got {number!r}")
        self.store = store
        self.registry = registry
        self.concurrency = concurrency
        self.batch_size = batch_size or concurrency
        self.prefetch = self.batch_size if prefetch is None else prefetch
        self.lease = lease
        self.poll_interval = poll_interval
        self.backoff = backoff or Backoff()
        self.job_timeout = job_timeout
        self.retention = retention
        self.dead_retention = dead_retention
        self.shutdown_timeout = shutdown_timeout
        self.listen = listen
        self.batch_window = batch_window
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.counters = TaskCounters()
        """Outcomes of this worker's attempts, by task type."""
        self._state = WorkerState.NEW
        self._stopping = False
        self._until_empty = False
        self._running: dict[asyncio.Task[None], Job] = {}
        self._ready: collections.deque[Job] = collections.deque()  # claimed ahead
        self._outcomes: list[Finish] = []
        self._unwritten: set[int] = set()  # ids of jobs whose outcome is not written yet
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self._written = asyncio.Event()  # set while every outcome is written back
        self._written.set()
        self._stopped = asyncio.Event()
        self._closing = False
        self._runner: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.name!r} {self._state.value} running={len(self._running)}>"

    @property
    def state(self) -> WorkerState:
        """Where the worker is in its life."""
        return self._state

    # -- lifecycle ------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming and drain (returns at once; :meth:`run` returns when done).

        Safe to call from a signal handler installed with ``loop.add_signal_handler``.
        """
        self._stopping = True
        for event in (self._wake, self._slot_freed, self._stopped):
            event.set()

    async def __aenter__(self) -> Worker:
        self._runner = asyncio.get_running_loop().create_task(self.run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        assert self._runner is not None
        await self._runner

    async def run(self, *, until_empty: bool = False) -> None:
        """Run jobs until :meth:`stop` (or, with ``until_empty``, until no job is due).

        Raises:
            RuntimeError: the worker already ran (a worker runs once).
            OutboxError: the database cannot be reached at start.
        """
        if self._state is not WorkerState.NEW:
            raise RuntimeError(f"{self!r} already ran; create a new Worker")
        self._state = WorkerState.RUNNING
        self._until_empty = until_empty
        await self.store.open()
        close_listener = None
        if self.listen:
            try:
                close_listener = await self.store.listen(self._wake.set)
            except OutboxError as exc:
                logger.warning("apitask.outbox: cannot listen (%s); polling instead", exc)
        loop = asyncio.get_running_loop()
        flusher = loop.create_task(self._flusher())
        helpers = [loop.create_task(self._heartbeats()), loop.create_task(self._maintenance())]
        logger.info("apitask.outbox: worker %s started", self.name)
        try:
            await self._claim_loop()
        finally:
            await self._drain()
            self._closing = True
            self._flush_wanted.set()
            await flusher
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if close_listener is not None:
                await close_listener()
            self._state = WorkerState.STOPPED
            logger.info("apitask.outbox: worker %s stopped", self.name)

    # -- claiming -------------------------------------------------------------

    async def _pause(self, event: asyncio.Event, timeout: float) -> None:
        # asyncio.wait, not asyncio.timeout: a timeout here is the normal case,
        # and waking by cancelling the worker's own task would be noise.
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait((waiter,), timeout=timeout)
        finally:
            waiter.cancel()

    async def _claim_loop(self) -> None:
        while not self._stopping:
            free = self.concurrency - len(self._running)
            # Jobs wanted in hand: every slot busy and `prefetch` more held ahead.
            room = free + self.prefetch - len(self._ready)
            # With every slot busy, claim only once a good part of a batch fits
            # (half a batch, or all of a smaller prefetch): one claim per freed
            # slot would cost a transaction per job.
            if free <= 0 and room < max(1, min(self.prefetch, (self.batch_size + 1) // 2)):
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            wanted = min(room, self.batch_size)
            self._wake.clear()
            self._slot_freed.clear()
            # Nothing running and every outcome written before this claim: an
            # empty answer then means no job is due (until_empty may stop).
            settled = not self._running and self._written.is_set()
            jobs = await self._claim(wanted)
            if jobs is None:
                continue
            ours = self._held()
            for job in jobs:
                if job.id in ours:
                    # Our own lease ran out while the job ran or its outcome waited for
                    # the database (a busy SQLite file can hold writes for seconds):
                    # the claim renewed the lease; running it again would repeat it.
                    continue
                self._ready.append(job)
            self._start_ready()
            if len(jobs) < wanted:
                if self._until_empty and not jobs and not self._running:
                    if settled:
                        return
                    # Retries become due only once written: write, then look again.
                    await self._written.wait()
                    continue
                # The queue looked empty: sleep until a notification, a freed
                # slot (with until_empty), or the poll interval; then let jobs
                # gather for batch_window, so that one claim takes many.
                await self._pause(
                    self._slot_freed if self._until_empty else self._wake, self.poll_interval
                )
                if self.batch_window:
                    await asyncio.sleep(self.batch_window)

    async def _claim(self, wanted: int) -> list[Job] | None:
        try:
            return await self.store.claim(self.name, wanted, self.lease)
        except OutboxError as exc:
            logger.error("apitask.outbox: claim failed (%s); retrying", exc)
        # Pause outside the except block: nothing to chain to the pause's own
        # exceptions, and the error is not kept alive while we sleep.
        await self._pause(self._stopped, self.poll_interval)
        return None

    def _start_ready(self) -> None:
        """Start jobs held ahead while slots are free (not once a stop began)."""
        while self._ready and len(self._running) < self.concurrency and not self._stopping:
            job = self._ready.popleft()
            task = asyncio.get_running_loop().create_task(self._attempt(job))
            self._running[task] = job
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        del self._running[task]
        self._start_ready()  # the next job held ahead takes the slot at once
        self._slot_freed.set()

    # -- one attempt ------------------------------------------------------------

    async def _attempt(self, job: Job) -> None:
        # Each attempt is an asyncio task with its own copy of the context:
        # the request id set here is seen by this attempt's code and logs only.
        task_request_id.set(job.request_id)
        self.counters.add(job.type, Outcome.STARTED)
        try:
            finish = await self._execute(job)
        except asyncio.CancelledError:
            self._record(job, Finish(job.id, Verdict.RELEASED))
            raise
        self._record(job, finish)

    async def _execute(self, job: Job) -> Finish:
        if job.attempts > self.backoff.max_attempts:
            # Only a lease that expired (its worker died mid-attempt) gets here.
            return Finish(
                job.id,
                Verdict.DEAD,
                error=f"gave up after {job.attempts - 1} attempts; last: {job.last_error}",
            )
        try:
            task = self.registry.build(job.type, job.payload)
        except JobDecodeError as exc:
            return Finish(job.id, Verdict.DEAD, error=str(exc)[:_MAX_ERROR])
        try:
            await self._run_timed(task)
        except Exception as exc:
            return self._failed(job, exc)
        return Finish(job.id, Verdict.SUCCEEDED)

    async def _run_timed(self, task: Task) -> None:
        try:
            async with asyncio.timeout(self.job_timeout) as deadline:
                await task.run()
        except TimeoutError:
            if not deadline.expired():
                raise  # the task's own TimeoutError: its verdict, not ours
            raise JobTimeoutError(
                f"attempt ran longer than job_timeout ({self.job_timeout:g}s)"
            ) from None

    def _failed(self, job: Job, exc: Exception) -> Finish:
        reason = _reason(exc)
        delay = next_delay(exc, job.attempts, self.backoff)
        if delay is not None:
            logger.warning(
                'apitask.outbox: job %d "%s" attempt %d failed (%s); retry in %.1fs',
                job.id,
                job.type,
                job.attempts,
                reason,
                delay,
            )
            return Finish(job.id, Verdict.RETRY, delay=delay, error=reason)
        if isinstance(exc, TransientError):  # transient, but no attempt is left
            error = f"gave up after {job.attempts} attempts; last: {reason}"
            return Finish(job.id, Verdict.DEAD, error=error[:_MAX_ERROR])
        logger.error(
            'apitask.outbox: job %d "%s" failed permanently: %s',
            job.id,
            job.type,
            exc,
            exc_info=exc,
        )
        return Finish(job.id, Verdict.DEAD, error=reason)

    def _record(self, job: Job, finish: Finish) -> None:
        outcome = {
            Verdict.SUCCEEDED: Outcome.SUCCEEDED,
            Verdict.RETRY: Outcome.RETRIED,
            Verdict.DEAD: Outcome.FAILED,
            Verdict.RELEASED: Outcome.CANCELLED,
        }[finish.verdict]
        self.counters.add(job.type, outcome)
        if finish.verdict is Verdict.DEAD:
            logger.error('apitask.outbox: job %d "%s" is dead: %s', job.id, job.type, finish.error)
        self._write_back(finish)

    def _write_back(self, finish: Finish) -> None:
        """Queue ``finish`` for the flusher; the job stays ours until it is written."""
        self._outcomes.append(finish)
        self._unwritten.add(finish.job_id)
        self._written.clear()
        self._flush_wanted.set()

    # -- write-back, leases, retention --------------------------------------------

    async def _flusher(self) -> None:
        # Outcomes pile up while a write is in flight and go in the next one:
        # the busier the worker, the bigger (and cheaper per job) the batches.
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            batch, self._outcomes = self._outcomes, []
            if batch:
                try:
                    await self.store.finish(self.name, batch, keep=self.retention > 0)
                except OutboxError as exc:
                    self._outcomes[:0] = batch
                    if self._closing:
                        logger.error(
                            "apitask.outbox: could not record %d outcomes (%s); their leases "
                            "will expire and those jobs will run again",
                            len(batch),
                            exc,
                        )
                        return
                    logger.error("apitask.outbox: could not record outcomes (%s); retrying", exc)
                    await asyncio.sleep(self.poll_interval)
                    self._flush_wanted.set()
                    continue
                self._unwritten.difference_update(o.job_id for o in batch)
            if not self._outcomes:
                self._written.set()
                if self._closing:
                    return

    def _held(self) -> set[int]:
        """The jobs this worker holds: running, or run with the outcome not yet written
        (outcomes being written count too: a write that fails keeps them ours)."""
        held = self._unwritten.union(job.id for job in self._running.values())
        return held.union(job.id for job in self._ready)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            ids = sorted(self._held())
            if ids:
                try:
                    await self.store.heartbeat(self.name, ids, self.lease)
                except OutboxError as exc:
                    logger.warning("apitask.outbox: heartbeat failed (%s)", exc)

    async def _maintenance(self) -> None:
        next_purge = 0.0
        while True:
            try:
                if await self.store.reap(self.name):
                    self._wake.set()
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + _PURGE_EVERY
                    if self.retention > 0:
                        await self.store.purge(JobState.SUCCEEDED, self.retention)
                    if self.dead_retention is not None:
                        await self.store.purge(JobState.DEAD, self.dead_retention)
            except OutboxError as exc:
                logger.warning("apitask.outbox: maintenance failed (%s)", exc)
            await asyncio.sleep(min(self.lease / 2, _PURGE_EVERY))

    async def _drain(self) -> None:
        self._state = WorkerState.DRAINING
        # Claimed ahead, never started: due again at once, the attempt not counted.
        while self._ready:
            self._write_back(Finish(self._ready.popleft().id, Verdict.RELEASED))
        if not self._running:
            return
        _, pending = await asyncio.wait(list(self._running), timeout=self.shutdown_timeout)
        if pending:
            logger.warning(
                "apitask.outbox: %d jobs still running after %.1fs: cancelled and released",
                len(pending),
                self.shutdown_timeout,
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)


async def run_worker(
    outbox: Outbox,
    *,
    migrate: bool = True,
    until_empty: bool = False,
    signals: bool = True,
    **options: Any,
) -> None:
    """Run one worker on ``outbox`` until SIGTERM/SIGINT (or until no job is due).

    A signal starts a graceful drain: no new claims, running jobs get the
    worker's ``shutdown_timeout``, then are cancelled and released.

    Args:
        outbox: the outbox to work on.
        migrate: create or upgrade the outbox tables first.
        until_empty: return once no job is due and none is running.
        signals: install SIGTERM and SIGINT handlers for the run.
        options: :class:`Worker` options (concurrency, lease, ...).
    """
    if migrate:
        await outbox.migrate()
    worker = outbox.worker(**options)
    loop = asyncio.get_running_loop()
    handled = (signal.SIGTERM, signal.SIGINT) if signals else ()
    for signum in handled:
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run(until_empty=until_empty)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)

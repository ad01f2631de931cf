"""The in-memory worker pool: a bounded queue, N workers, retries, a graceful drain.

The rules live in :mod:`apitask._pool_state` (:class:`PoolBook`); this module
drives them on an event loop. Workers are long-lived coroutines pulling from
one queue, so a task costs a queue append and a wake-up, not an
``asyncio.Task`` of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import random
import threading
from collections import deque
from typing import TYPE_CHECKING

from ._exceptions import PoolClosedError, QueueFullError
from ._pool_drain import log_leftover, spill
from ._pool_loop import hand_over, no_running_loop, wake_all, wake_one
from ._pool_state import (
    FULL_POLICIES,
    SUCCEEDED,
    Admission,
    Drain,
    DrainReport,
    FullPolicy,
    Idle,
    PoolBook,
    PoolEntry,
    PoolState,
    Retry,
    RunInline,
)
from ._request_id import current_request_id, task_request_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from types import TracebackType

    from ._backoff import Backoff
    from ._counters import TaskCounters
    from ._types import Task, TaskSink

__all__ = ["FullPolicy", "WorkerPool"]

logger = logging.getLogger("apitask")


class WorkerPool:
    """Run tasks in the background of this process, on a fixed set of workers.

    Use it as an async context manager (or ``pool.lifespan`` as an ASGI app's
    lifespan); leaving it drains the pool. ``submit`` hands a task over and
    returns without waiting for it to run. See docs/pool.md.

    Args:
        workers: number of workers (tasks running at once). Default:
            ``os.cpu_count() * per_cpu``.
        per_cpu: workers per CPU when ``workers`` is not given.
        queue_size: most tasks waiting to start; then ``when_full`` applies.
        shutdown_timeout: seconds the drain waits for queued and running tasks
            before cancelling the rest.
        when_full: ``"inline"`` runs the task in the submitting caller,
            ``"wait"`` waits up to ``full_timeout`` for room then raises
            :class:`~apitask.QueueFullError`, ``"reject"`` raises at once,
            ``"spill"`` hands the task to ``spill`` (an outbox: the task is
            stored, in the caller's declared transaction if any, and runs
            later) and counts it as spilled.
        full_timeout: bound on the ``"wait"`` policy, in seconds (None: no bound).
        backoff: retry timing for tasks raising :class:`~apitask.TransientError`
            (the only exceptions retried, as in the outbox; see
            :func:`apitask._backoff.next_delay`).
        rng: source of the backoff jitter (``random.random``; pass a fixed one in tests).
        threads: size of the pool's own thread pool for sync function tasks
            (default: ``workers``, at most 32).
        cancel_timeout: seconds to await the cancellation of tasks still running
            after the drain deadline; one that ignores it is reported, not awaited.
        spill: where durable leftovers go after the drain deadline (an outbox).
        spill_timeout: bound on the whole spill, in seconds.
    """

    def __init__(
        self,
        workers: int | None = None,
        per_cpu: int = 8,
        queue_size: int = 10_000,
        shutdown_timeout: float = 20.0,
        *,
        when_full: FullPolicy = "inline",
        full_timeout: float | None = 5.0,
        backoff: Backoff | None = None,
        rng: Callable[[], float] = random.random,
        threads: int | None = None,
        cancel_timeout: float = 2.0,
        spill: TaskSink | None = None,
        spill_timeout: float = 5.0,
    ) -> None:
        if workers is None:
            if per_cpu < 1:
                raise ValueError(f"per_cpu must be >= 1, got {per_cpu!r}")
            workers = (os.cpu_count() or 1) * per_cpu
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size!r}")
        if when_full not in FULL_POLICIES:
            raise ValueError(f"when_full must be one of {FULL_POLICIES}, got {when_full!r}")
        if when_full == "spill" and spill is None:
            raise ValueError('when_full="spill" needs a spill sink (spill=...)')
        for name, value in (
            ("shutdown_timeout", shutdown_timeout),
            ("cancel_timeout", cancel_timeout),
            ("spill_timeout", spill_timeout),
            ("full_timeout", 0.0 if full_timeout is None else full_timeout),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        self.workers = workers
        self.queue_size = queue_size
        self.shutdown_timeout = shutdown_timeout
        self.when_full = when_full
        self.full_timeout = full_timeout
        self.threads = threads if threads is not None else min(workers, 32)
        self.cancel_timeout = cancel_timeout
        self.spill = spill
        self.spill_timeout = spill_timeout
        self._book = PoolBook(queue_size, when_full, backoff, rng)
        self.backoff = self._book.backoff
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._idle: deque[asyncio.Future[None]] = deque()  # workers waiting for an entry
        self._room: deque[asyncio.Future[None]] = deque()  # submitters waiting for room
        self._timers: dict[PoolEntry, asyncio.TimerHandle] = {}
        # Set by the Done that ends the last in-flight entry of a draining pool.
        self._emptied = asyncio.Event()
        self._closing: asyncio.Task[DrainReport] | None = None
        self._report: DrainReport | None = None
        self._thread: threading.Thread | None = None
        self._on_closed: Callable[[], None] | None = None

    # ------------------------------------------------------------ reading

    @property
    def state(self) -> PoolState:
        """Where the pool is in its lifecycle."""
        return self._book.state

    @property
    def counters(self) -> TaskCounters:
        """Outcomes so far, by task type: submitted, started, succeeded, retried,
        failed, cancelled, spilled, abandoned (a snapshot, safe from any thread)."""
        return self._book.counters()

    @property
    def queue_depth(self) -> int:
        """Tasks waiting to start."""
        return len(self._book.queue)

    @property
    def oldest_queued_age(self) -> float:
        """Seconds the oldest waiting task has waited (0.0 when none waits)."""
        return self._book.oldest_age

    @property
    def running(self) -> int:
        """Tasks running now."""
        return len(self._book.running)

    @property
    def retrying(self) -> int:
        """Tasks waiting for their next attempt after a transient failure."""
        return len(self._book.retrying)

    @property
    def report(self) -> DrainReport | None:
        """The drain report, once the pool is closed."""
        return self._report

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the workers on the running loop (``async with`` does this)."""
        if self._book.state is not PoolState.CREATED:
            raise RuntimeError(f"a WorkerPool can be started once; it is {self.state.value}")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self.threads, thread_name_prefix="apitask-pool"
        )
        self._book.open()
        # Workers get an empty context of their own: a pool started inside a
        # request scope must not hand that (soon closed) scope to every task.
        self._workers = [
            loop.create_task(self._work(), context=contextvars.Context())
            for _ in range(self.workers)
        ]

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """An ASGI lifespan that runs the pool: ``Starlette(lifespan=pool.lifespan)``.

        The pool starts before the app serves and drains when the server shuts
        down (uvicorn: on SIGTERM, after in-flight requests finished).
        """
        async with self:
            yield

    def start_sync(self) -> None:
        """Start the pool on its own event loop in a daemon thread (WSGI apps).

        Then ``submit_sync`` works from any thread; ``close_sync`` drains.
        """
        if self._book.state is not PoolState.CREATED:
            raise RuntimeError(f"a WorkerPool can be started once; it is {self.state.value}")
        ready = threading.Event()

        async def serve() -> None:
            stopped = asyncio.Event()
            self._on_closed = stopped.set
            try:
                await self.start()
            finally:
                ready.set()  # a failed start leaves the pool CREATED: submits raise
            await stopped.wait()

        self._thread = threading.Thread(
            target=asyncio.run, args=(serve(),), name="apitask-pool-loop", daemon=True
        )
        self._thread.start()
        ready.wait()

    def close_sync(self) -> DrainReport:
        """Drain from a thread without a running loop; see :meth:`aclose`."""
        loop = self._loop
        if loop is None:
            return self._close_unstarted()
        no_running_loop("close_sync", "await pool.aclose()")
        report = hand_over(loop, self.aclose(), "close the pool").result()
        if self._thread is not None:
            # A task that ignores cancellation can keep that loop alive; the
            # thread is a daemon, so it will not hold the process.
            self._thread.join(self.cancel_timeout)
        return report

    async def aclose(self) -> DrainReport:
        """Stop intake, drain, cancel what is left, spill it, and report.

        1. Submits raise :class:`~apitask.PoolClosedError` from now on.
        2. Queued, running and retrying tasks may finish within ``shutdown_timeout``.
        3. Then queued and retrying ones are dropped and running ones cancelled;
           their cancellation is awaited for ``cancel_timeout`` at most.
        4. Every leftover that is a :class:`~apitask.DurableTask` is handed to
           ``spill``; the others, and those the spill refused, are abandoned.
        Each leftover is logged (type, payload) and listed in the report.
        Closing again returns the same report.
        """
        loop = self._loop
        if loop is None:
            return self._close_unstarted()
        if asyncio.get_running_loop() is not loop:
            return await asyncio.wrap_future(hand_over(loop, self.aclose(), "close the pool"))
        if self._closing is None:
            self._closing = loop.create_task(self._shutdown())
        return await asyncio.shield(self._closing)

    def _close_unstarted(self) -> DrainReport:
        self._book.close()  # nothing was ever queued
        self._report = self._report or DrainReport()
        return self._report

    # ------------------------------------------------------------ intake

    async def submit(self, task: Task) -> None:
        """Hand ``task`` to the pool; it runs later on a worker.

        With a full queue the ``when_full`` policy applies: ``"inline"`` runs
        the task here before returning (its failure is logged, not raised),
        ``"wait"`` waits for room, ``"reject"`` raises, ``"spill"`` hands it
        to the spill sink (whose errors it raises).

        Raises:
            PoolClosedError: the pool is not running (not started, draining, closed).
            QueueFullError: the queue is full and the policy is ``"reject"``,
                or ``"wait"`` found no room within ``full_timeout``.
        """
        loop = self._loop
        if loop is not None and asyncio.get_running_loop() is not loop:
            # Another loop (another thread): hand over to the pool's own.
            await asyncio.wrap_future(hand_over(loop, self.submit(task), f"submit {task.type!r}"))
            return
        request_id = current_request_id()
        action = self._book.admit(task, request_id)
        if action is Admission.QUEUED:
            if self._idle:  # a call saved per task when every worker is busy
                wake_one(self._idle)
            return
        await self._not_queued(task, request_id, action)

    def submit_sync(self, task: Task) -> None:
        """:meth:`submit` from a thread with no running event loop (a WSGI handler).

        The task crosses to the pool's loop thread-safely; the same full-queue
        policy applies (``"inline"`` blocks this thread until the task ran).
        """
        no_running_loop("submit_sync", "await pool.submit(task)")
        loop = self._loop
        if loop is None or self._book.state is not PoolState.RUNNING:
            raise PoolClosedError(
                f"cannot submit task {task.type!r}: the worker pool is {self.state.value}; "
                "the task was not run"
            )
        hand_over(loop, self.submit(task), f"submit task {task.type!r}").result()

    async def _not_queued(
        self, task: Task, request_id: str | None, action: Admission | RunInline
    ) -> None:
        """Do what :meth:`PoolBook.admit` said for a task it did not queue."""
        if action is Admission.WAIT:
            action = await self._wait_for_room(task, request_id)
        if action is Admission.QUEUED:
            wake_one(self._idle)
        elif action is Admission.CLOSED:
            raise PoolClosedError(
                f"cannot submit task {task.type!r}: the worker pool is {self.state.value}; "
                "the task was not run"
            )
        elif action is Admission.REJECT:
            raise QueueFullError(
                f"cannot submit task {task.type!r}: the worker pool's queue is full "
                f"({self.queue_size} tasks); the task was not run"
            )
        elif action is Admission.SPILL:
            # In the caller's context: an outbox sink writes the job into the
            # transaction the caller declared, with the rest of its writes.
            await self.spill.submit(task)  # type: ignore[union-attr]  # checked in __init__
            self._book.count_spilled(task.type)
        else:
            assert isinstance(action, RunInline)
            await self._attempt(action.entry)

    async def _wait_for_room(self, task: Task, request_id: str | None) -> Admission | RunInline:
        """Wait until a worker frees a slot, then admit ``task`` again (another
        submitter may have taken the slot: then wait again)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.full_timeout):
                while True:
                    room = loop.create_future()
                    self._room.append(room)
                    try:
                        await room
                    except asyncio.CancelledError:
                        if not room.cancelled():
                            wake_one(self._room)  # woken as we gave up: pass it on
                        raise
                    action = self._book.admit(task, request_id)
                    if action is not Admission.WAIT:
                        return action
        except TimeoutError:
            raise QueueFullError(
                f"cannot submit task {task.type!r}: the worker pool's queue stayed full "
                f"for {self.full_timeout}s; the task was not run"
            ) from None

    # ------------------------------------------------------------ running

    async def _work(self) -> None:
        book = self._book
        loop = asyncio.get_running_loop()
        request_id: str | None = None
        while True:
            entry = book.take()
            if isinstance(entry, Idle):  # no entry for this worker
                if entry is Idle.EXIT:
                    return
                idle = loop.create_future()
                self._idle.append(idle)
                await idle
                continue
            if self._room:  # submitters waiting for room: rare, so checked first
                wake_one(self._room)
            # This worker's context is its own: set the id for this entry's
            # logs (and tasks it submits) when it changes; no reset needed.
            if entry.request_id != request_id:
                request_id = entry.request_id
                task_request_id.set(request_id)
            await self._attempt(entry)

    async def _attempt(self, entry: PoolEntry) -> None:
        """Run the attempt :class:`PoolBook` started, and do what its end calls for."""
        task = entry.task
        try:
            if entry.is_sync:
                assert self._executor is not None
                run_sync = task.run_sync  # type: ignore[attr-defined]
                if entry.request_id is None:
                    entry.thread = self._executor.submit(run_sync)
                else:  # a pool thread has no context: lend it the worker's (the id)
                    entry.thread = self._executor.submit(contextvars.copy_context().run, run_sync)
                await asyncio.wrap_future(entry.thread)
            else:
                await task.run()
        except asyncio.CancelledError as exc:
            me = asyncio.current_task()
            assert me is not None
            if me.cancelling():
                # The worker (at the drain deadline) or the inline caller is cancelled.
                if self._book.cancelled(entry).drained:
                    self._emptied.set()
                raise
            # The task let a CancelledError of its own escape (it awaited
            # something that was cancelled): the task failed, the worker lives on.
            outcome = self._book.finish(entry, exc)
        except Exception as exc:
            outcome = self._book.finish(entry, exc)
        else:
            outcome = self._book.finish(entry, None)
            if outcome is SUCCEEDED:  # the common end: nothing to log, no drain to end
                return
        # What the end of the attempt calls for: a retry later, or logs and the drain.
        if isinstance(outcome, Retry):
            delay = outcome.delay
            note = f"retry in {delay:.3g}s"
            _log_attempt(logging.WARNING, "transient error", entry, note, outcome.error)
            assert self._loop is not None
            self._timers[entry] = self._loop.call_later(delay, self._retry_due, entry)
            return
        error = outcome.error
        if error is not None:
            shown = repr(error) if isinstance(error, asyncio.CancelledError) else error
            _log_attempt(logging.ERROR, "error", entry, "final", shown, error)
        if outcome.drained:
            self._emptied.set()

    def _retry_due(self, entry: PoolEntry) -> None:
        del self._timers[entry]
        self._book.retry_due(entry)  # queued again: wake a worker
        wake_one(self._idle)

    # ------------------------------------------------------------ shutdown

    async def _shutdown(self) -> DrainReport:
        book = self._book
        drain = book.begin_drain()
        wake_all(self._room)  # waiting submitters wake up and find the pool closed
        timed_out = False
        if drain is Drain.WAIT:
            try:
                async with asyncio.timeout(self.shutdown_timeout):
                    await self._emptied.wait()
            except TimeoutError:
                timed_out = True
        cancel = book.close()
        for entry in cancel.retrying:
            self._timers.pop(entry).cancel()
        # Running workers are cancelled; idle ones end where they wait.
        for worker in self._workers:
            worker.cancel()
        await asyncio.wait(self._workers, timeout=self.cancel_timeout)
        assert self._executor is not None
        # Threads cannot be cancelled: do not wait for one that is stuck.
        self._executor.shutdown(wait=False, cancel_futures=True)
        leftovers = book.leftovers(cancel)
        if self.spill is not None:
            leftovers = await spill(leftovers, self.spill, self.spill_timeout)
        for left in leftovers:
            log_leftover(left)
        self._report = book.report(timed_out, leftovers)
        if self._on_closed is not None:
            self._on_closed()
        return self._report


def _log_attempt(
    level: int,
    what: str,
    entry: PoolEntry,
    note: str,
    error: object,
    exc_info: BaseException | None = None,
) -> None:
    type = entry.task.type
    logger.log(
        level,
        'apitask: %s running "%s" (attempt %d, %s): %s',
        what,
        type,
        entry.attempt,
        note,
        error,
        exc_info=exc_info,
        extra={"action": "apitask", "task_type": type, "attempt": entry.attempt},
    )

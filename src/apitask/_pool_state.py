"""The worker pool's bookkeeping, without I/O (the httpcore connection-pool model).

:class:`PoolBook` decides; :class:`~apitask.WorkerPool` does what it decides.
Every method here is synchronous and returns what the driver must do next
(wake a worker, run inline, wait for room, raise, retry after a delay), so
the rules can be read, and tested, apart from the event loop.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._counters import Outcome, TaskCounters
from ._function import FunctionTask
from ._types import DurableTask

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import Callable, Iterable, Mapping

    from ._types import JSONValue, Task

__all__ = [
    "Admission",
    "DrainReport",
    "Job",
    "Leftover",
    "LeftoverState",
    "PoolBook",
    "PoolState",
    "TypeStats",
]


class PoolState(enum.Enum):
    """Lifecycle of a worker pool."""

    CREATED = "created"
    """Not started yet: submit raises :class:`~apitask.PoolClosedError`."""
    RUNNING = "running"
    """Workers run queued tasks; submit accepts."""
    DRAINING = "draining"
    """Shutting down: no new task accepted, queued and running ones finish."""
    CLOSED = "closed"
    """Shut down; the drain report is final."""


class Admission(enum.Enum):
    """What :meth:`PoolBook.admit` decided about a submitted task."""

    QUEUED = "queued"
    """Appended to the queue: wake an idle worker."""
    FULL = "full"
    """The queue is at capacity: apply the full-queue policy."""
    CLOSED = "closed"
    """The pool does not take work: raise PoolClosedError."""


class TypeStats:
    """Outcome counts of one task type, as plain ints.

    The pool counts on its loop thread only, so it needs no lock: a counter
    bump is an attribute increment, not a locked dict update (the cost of a
    task is a few of these). :meth:`PoolBook.counters` turns them into a
    :class:`~apitask.TaskCounters` when read.
    """

    __slots__ = (
        "abandoned",
        "cancelled",
        "failed",
        "retried",
        "spilled",
        "started",
        "submitted",
        "succeeded",
    )

    def __init__(self) -> None:
        self.submitted = self.started = self.succeeded = self.retried = 0
        self.failed = self.cancelled = self.spilled = self.abandoned = 0


class Job:
    """A task that started, and what the pool knows about its attempts.

    Queued tasks are not wrapped yet: a Job is made when a worker takes the
    task. A queue of 100,000 tasks then holds no extra object the garbage
    collector must walk (measured: it was a third of the cost of submit).
    """

    __slots__ = ("attempt", "done", "is_sync", "request_id", "stats", "task", "thread")

    def __init__(self, task: Task, stats: TypeStats, request_id: str | None = None) -> None:
        self.task = task
        self.stats = stats
        # The id of the request that submitted the task: only the id, never its scope.
        self.request_id = request_id
        # Sync functions run on the pool's threads, never on the loop.
        self.is_sync = isinstance(task, FunctionTask) and not task.is_async
        self.attempt = 0
        self.done = False
        # The thread running a sync attempt: a thread cannot be cancelled,
        # so the drain report must know whether it is still going.
        self.thread: concurrent.futures.Future[None] | None = None


class LeftoverState(enum.Enum):
    """Where a task that did not complete was when the drain deadline passed."""

    QUEUED = "queued"
    """Never started."""
    RETRYING = "retrying"
    """Failed transiently and was waiting for its next attempt."""
    CANCELLED = "cancelled"
    """Was running; cancelled, and the cancellation finished."""
    STUCK = "stuck"
    """Was running and still is: it ignored cancellation (or runs in a thread)."""


@dataclass(frozen=True, slots=True)
class Leftover:
    """A task that did not complete before the pool shut down.

    Attributes:
        type: the task's type.
        state: where it was at the deadline.
        payload: ``task.payload()`` for a :class:`~apitask.DurableTask`, else None.
        spilled: whether the spill sink accepted it.
        error: why it was not spilled, when a spill was tried and failed.
        task: the task itself (e.g. to hand it elsewhere).
        request_id: the id of the request that submitted it, if one did (a
            spill hands it on, so the task's logs name that request wherever
            it runs).
    """

    type: str
    state: LeftoverState
    payload: Mapping[str, JSONValue] | None = None
    spilled: bool = False
    error: str | None = None
    task: Task | None = field(default=None, repr=False, compare=False)
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What a pool's shutdown left undone.

    Attributes:
        timed_out: the queue and running tasks did not drain within the
            shutdown timeout, so the rest was cancelled.
        leftovers: every task that did not complete, spilled or not.
    """

    timed_out: bool = False
    leftovers: tuple[Leftover, ...] = ()

    @property
    def complete(self) -> bool:
        """Every accepted task ran to its end (success or final failure)."""
        return not self.leftovers

    @property
    def spilled(self) -> tuple[Leftover, ...]:
        """Leftovers the spill sink accepted (they will run elsewhere)."""
        return tuple(left for left in self.leftovers if left.spilled)

    @property
    def abandoned(self) -> tuple[Leftover, ...]:
        """Leftovers that are lost to this process: not spilled."""
        return tuple(left for left in self.leftovers if not left.spilled)


def describe(task: Task, state: LeftoverState, request_id: str | None = None) -> Leftover:
    """A leftover with the task's payload when it has one.

    A payload() that raises is not allowed to hide the task: it is reported
    without payload, and cannot be spilled.
    """
    payload: Mapping[str, JSONValue] | None = None
    error: str | None = None
    if isinstance(task, DurableTask):
        try:
            payload = task.payload()
        except Exception as exc:
            error = f"payload() failed: {type(exc).__name__}: {exc}"
    return Leftover(task.type, state, payload, error=error, task=task, request_id=request_id)


class PoolBook:
    """Queue, lifecycle and in-flight bookkeeping of one pool.

    Args:
        capacity: most tasks waiting in the queue (running ones not counted).
        clock: monotonic seconds, for the age of the oldest queued task.
    """

    __slots__ = (
        "by_type",
        "capacity",
        "clock",
        "queue",
        "queued_at",
        "request_ids",
        "retrying",
        "running",
        "state",
    )

    def __init__(self, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.clock = clock
        self.state = PoolState.CREATED
        # New tasks, or Jobs back for a retry; and when each was queued
        # (floats, which the garbage collector does not track).
        self.queue: deque[Task | Job] = deque()
        self.queued_at: deque[float] = deque()
        # Which request submitted each queued task (a reference to its id string).
        self.request_ids: deque[str | None] = deque()
        self.running = 0
        # Jobs waiting for their retry delay: not queued, not running.
        self.retrying: set[Job] = set()
        self.by_type: dict[str, TypeStats] = {}

    def stats(self, type: str) -> TypeStats:
        """The counts of ``type`` (created at its first task)."""
        stats = self.by_type.get(type)
        if stats is None:
            stats = self.by_type[type] = TypeStats()
        return stats

    def counters(self) -> TaskCounters:
        """A snapshot of the counts as :class:`~apitask.TaskCounters` (zeros left out)."""
        counters = TaskCounters()
        for type, stats in list(self.by_type.items()):
            for outcome in Outcome:
                n = getattr(stats, outcome.value)
                if n:
                    counters.add(type, outcome, n)
        return counters

    def open(self) -> None:
        """The workers are started: accept tasks."""
        self.state = PoolState.RUNNING

    def admit(self, task: Task, request_id: str | None = None) -> Admission:
        """Queue ``task`` (submitted by request ``request_id``) if the pool runs and has room."""
        if self.state is not PoolState.RUNNING:
            return Admission.CLOSED
        if len(self.queue) >= self.capacity:
            return Admission.FULL
        self.queue.append(task)
        self.queued_at.append(self.clock())
        self.request_ids.append(request_id)
        return Admission.QUEUED

    def take(self) -> Job | None:
        """The next job to run (now counted as running), or None if none is queued."""
        queue = self.queue
        if not queue:
            return None
        self.running += 1
        self.queued_at.popleft()
        request_id = self.request_ids.popleft()
        item = queue.popleft()
        if isinstance(item, Job):
            return item  # back for a retry
        return Job(item, self.by_type.get(item.type) or self.stats(item.type), request_id)

    def run_inline(self) -> None:
        """A job that did not fit runs in its caller: count it as running, unqueued."""
        self.running += 1

    def finish(self, job: Job) -> None:
        """A running job ended (success or final failure); see :attr:`drained`."""
        self.running -= 1
        job.done = True

    def wait_retry(self, job: Job) -> None:
        """A running job failed transiently and waits for its next attempt."""
        self.running -= 1
        self.retrying.add(job)

    def retry_due(self, job: Job) -> None:
        """A retry delay passed: back to the end of the queue, above capacity.

        The task was accepted once; refusing its retry for lack of room
        would lose it.
        """
        self.retrying.discard(job)
        self.queue.append(job)
        self.queued_at.append(self.clock())
        self.request_ids.append(job.request_id)

    @property
    def drained(self) -> bool:
        """Draining, and nothing is queued, running or waiting to retry."""
        return (
            self.state is PoolState.DRAINING
            and not self.queue
            and not self.running
            and not self.retrying
        )

    @property
    def oldest_age(self) -> float:
        """Seconds the oldest queued job has waited (0.0 when the queue is empty)."""
        if not self.queued_at:
            return 0.0
        return max(0.0, self.clock() - self.queued_at[0])

    def begin_drain(self) -> None:
        """Stop intake; queued, running and retrying jobs still complete."""
        self.state = PoolState.DRAINING

    def abort(self) -> tuple[list[tuple[Task, str | None]], list[Job]]:
        """Close; return (queued tasks with the id of the request that submitted
        each, jobs waiting to retry), none of which will start."""
        self.state = PoolState.CLOSED
        queued = [
            (item.task, item.request_id) if isinstance(item, Job) else (item, request_id)
            for item, request_id in zip(self.queue, self.request_ids, strict=True)
        ]
        self.queue.clear()
        self.queued_at.clear()
        self.request_ids.clear()
        retrying = list(self.retrying)
        self.retrying.clear()
        return queued, retrying

    def leftovers(
        self,
        queued: Iterable[tuple[Task, str | None]],
        retrying: Iterable[Job],
        cancelled: Iterable[Job],
        still_running: Iterable[Job] = (),
    ) -> list[Leftover]:
        """Describe every job that did not complete, in a stable order.

        ``cancelled`` are the jobs that were running at the deadline;
        ``still_running`` those of them whose worker outlived the cancel grace.
        """
        lefts = [describe(task, LeftoverState.QUEUED, request_id) for task, request_id in queued]
        lefts += [describe(job.task, LeftoverState.RETRYING, job.request_id) for job in retrying]
        alive = set(still_running)
        for job in cancelled:
            if job.done:
                continue  # it swallowed the cancellation but did finish
            in_thread = job.thread is not None and not job.thread.done()
            stuck = in_thread or job in alive
            state = LeftoverState.STUCK if stuck else LeftoverState.CANCELLED
            lefts.append(describe(job.task, state, job.request_id))
        return lefts

"""The worker pool's bookkeeping, without I/O (the httpcore connection-pool model).

:class:`PoolBook` decides; :class:`~apitask.WorkerPool` does what it decides.
Every state change is a synchronous method that returns the action the
driver must perform next (wake a worker, run inline, wait for room, raise,
retry after a delay, cancel), so the rules can be read, and tested, apart
from the event loop:

========================  ==============================================
method                    returns
========================  ==============================================
``admit(task)``           an :class:`Admission`, or :class:`RunInline`
``take()``                the next :class:`PoolEntry` to run, or an :class:`Idle`
``finish(entry, exc)``      :class:`Retry` or :class:`Done`
``cancelled(entry)``        :class:`Done`
``retry_due(entry)``        ``Admission.QUEUED`` (wake a worker)
``begin_drain()``         a :class:`Drain`: whether to wait for the rest
``close()``               :class:`Cancel`: what will not run, what to cancel
``report(...)``           the final :class:`DrainReport`
========================  ==============================================
"""

from __future__ import annotations

import enum
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ._backoff import Backoff, next_delay
from ._counters import Outcome, TaskCounters
from ._function import FunctionTask
from ._types import DurableTask

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import Callable, Iterable, Mapping

    from ._types import JSONValue, Task

__all__ = [
    "Admission",
    "Cancel",
    "Done",
    "Drain",
    "DrainReport",
    "FullPolicy",
    "Idle",
    "PoolEntry",
    "Leftover",
    "LeftoverState",
    "PoolBook",
    "PoolState",
    "Retry",
    "RunInline",
    "TypeStats",
]

FullPolicy = Literal["inline", "wait", "reject", "spill"]
FULL_POLICIES: tuple[FullPolicy, ...] = ("inline", "wait", "reject", "spill")


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
    """What the driver does with a submitted task (:meth:`PoolBook.admit`)."""

    QUEUED = "queued"
    """Queued and counted: wake an idle worker."""
    WAIT = "wait"
    """The queue is full (policy ``"wait"``): wait for room, then admit again."""
    REJECT = "reject"
    """The queue is full (policy ``"reject"``): raise QueueFullError."""
    SPILL = "spill"
    """The queue is full (policy ``"spill"``): hand the task to the spill
    sink, then :meth:`PoolBook.count_spilled` if the sink took it."""
    CLOSED = "closed"
    """The pool does not take work: raise PoolClosedError."""


@dataclass(frozen=True, slots=True)
class RunInline:
    """The queue is full (policy ``"inline"``): run ``entry`` in the caller now.

    The entry is counted as submitted and running, its first attempt started.
    """

    entry: PoolEntry


class Idle(enum.Enum):
    """What a worker does when :meth:`PoolBook.take` has no entry for it."""

    WAIT = "wait"
    """Nothing is queued: wait to be woken."""
    EXIT = "exit"
    """The pool is closed: return."""


@dataclass(frozen=True, slots=True)
class Retry:
    """The attempt failed transiently: run the entry again after ``delay`` seconds
    (then call :meth:`PoolBook.retry_due`). ``error`` is the failure, to log."""

    delay: float
    error: BaseException


@dataclass(frozen=True, slots=True)
class Done:
    """The entry reached its end.

    Attributes:
        error: the final failure, to log (None: it succeeded, or was cancelled).
        drained: it was the last entry of a draining pool: the drain may stop waiting.
    """

    error: BaseException | None = None
    drained: bool = False


# An entry that ends well returns one of these two: a frozen dataclass per
# task cost 18% of submit -> run (docs/core.md, "Performance notes").
SUCCEEDED = Done()
"""A success with nothing more to do: shared, so the driver can test it by identity."""
_SUCCEEDED_LAST = Done(drained=True)


class Drain(enum.Enum):
    """What :meth:`PoolBook.begin_drain` leaves the driver to await."""

    WAIT = "wait"
    """Entries are queued, running or waiting to retry: await the :class:`Done`
    whose ``drained`` is set, up to the shutdown timeout; then :meth:`PoolBook.close`."""
    NOTHING = "nothing"
    """Nothing is in flight: :meth:`PoolBook.close` at once."""


class TypeStats:
    """Outcome counts of one task type, as plain ints.

    The pool counts on its loop thread only, so it needs no lock: a counter
    bump is an attribute increment, not a locked dict update (a task makes
    three; counting through TaskCounters doubled the cost of submit -> run:
    docs/core.md, "Performance notes"). :meth:`PoolBook.counters` turns
    them into a :class:`~apitask.TaskCounters` when read.
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


class PoolEntry:
    """A task the pool started (on a worker, or inline), and its attempts.

    An entry of this pool's books, held in memory only; not an outbox job,
    which is a stored record. Queued tasks are not wrapped yet: an entry is
    made when a worker takes the task. A queue of 100,000 tasks then holds
    no extra object the garbage collector must walk (an entry per queued
    task cost 31% more per task and 9 MB more for 100,000 queued: docs/core.md,
    "Performance notes").
    """

    __slots__ = (
        "attempt",
        "cancelled",
        "done",
        "inline",
        "is_sync",
        "request_id",
        "stats",
        "task",
        "thread",
    )

    def __init__(
        self,
        task: Task,
        stats: TypeStats,
        request_id: str | None = None,
        *,
        inline: bool = False,
    ) -> None:
        self.task = task
        self.stats = stats
        # The id of the request that submitted the task: only the id, never its scope.
        self.request_id = request_id
        # Sync functions run on the pool's threads, never on the loop.
        self.is_sync = isinstance(task, FunctionTask) and not task.is_async
        # Run by the submitting caller (a full queue, policy "inline"), not a worker.
        self.inline = inline
        self.attempt = 0
        self.done = False  # ran to its end: success or final failure
        self.cancelled = False  # its worker was cancelled and let go of it
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


@dataclass(frozen=True, slots=True)
class Cancel:
    """What :meth:`PoolBook.close` stopped: the driver cancels, then reports.

    Attributes:
        queued: tasks that never started, with the id of the request that
            submitted each; dropped from the queue.
        retrying: entries waiting for a retry: cancel their timers.
        running: entries running on a worker: cancel the workers. (An entry run
            inline belongs to its caller and is not cancelled.)
    """

    queued: tuple[tuple[Task, str | None], ...] = ()
    retrying: tuple[PoolEntry, ...] = ()
    running: tuple[PoolEntry, ...] = ()


class PoolBook:
    """Queue, lifecycle, retries and counts of one pool, as a state machine.

    Args:
        capacity: most tasks waiting in the queue (running ones not counted).
        when_full: what :meth:`admit` answers when the queue is full.
        backoff: retry timing, for :func:`~apitask._backoff.next_delay`.
        rng: source of the backoff jitter.
        clock: monotonic seconds, for the age of the oldest queued task.
    """

    __slots__ = (
        "backoff",
        "by_type",
        "capacity",
        "clock",
        "drain_waits",
        "queue",
        "queued_at",
        "request_ids",
        "retrying",
        "rng",
        "running",
        "state",
        "when_full",
    )

    def __init__(
        self,
        capacity: int,
        when_full: FullPolicy = "inline",
        backoff: Backoff | None = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.when_full = when_full
        self.backoff = backoff if backoff is not None else Backoff()
        self.rng = rng
        self.clock = clock
        self.state = PoolState.CREATED
        # begin_drain() answered Drain.WAIT, and no Done has said drained yet.
        self.drain_waits = False
        # New tasks, or entries back for a retry; and when each was queued
        # (floats, which the garbage collector does not track).
        self.queue: deque[Task | PoolEntry] = deque()
        self.queued_at: deque[float] = deque()
        # Which request submitted each queued task (a reference to its id string).
        self.request_ids: deque[str | None] = deque()
        # Entries in an attempt now, on a worker or inline in their caller: a
        # dict as an ordered set, so that the report lists them in start order.
        self.running: dict[PoolEntry, None] = {}
        # Entries waiting for their retry delay: not queued, not running.
        self.retrying: set[PoolEntry] = set()
        self.by_type: dict[str, TypeStats] = {}

    # ------------------------------------------------------------ reading

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

    @property
    def oldest_age(self) -> float:
        """Seconds the oldest queued entry has waited (0.0 when the queue is empty)."""
        if not self.queued_at:
            return 0.0
        return max(0.0, self.clock() - self.queued_at[0])

    # ------------------------------------------------------------ intake

    def open(self) -> None:
        """The workers are started: accept tasks."""
        self.state = PoolState.RUNNING

    def admit(self, task: Task, request_id: str | None = None) -> Admission | RunInline:
        """A task was submitted (by request ``request_id``): queue it if there is room.

        The three cases: the pool is not running (``CLOSED``); there is room
        (``QUEUED``); the queue is full, and the full-queue policy answers.
        """
        if self.state is not PoolState.RUNNING:
            return Admission.CLOSED
        # by_type.get, not stats(): a call saved on every submit (docs/core.md).
        stats = self.by_type.get(task.type) or self.stats(task.type)
        if len(self.queue) < self.capacity:
            self.queue.append(task)
            self.queued_at.append(self.clock())
            self.request_ids.append(request_id)
            stats.submitted += 1
            return Admission.QUEUED
        if self.when_full == "inline":
            entry = PoolEntry(task, stats, inline=True)
            stats.submitted += 1
            self._start(entry)
            return RunInline(entry)
        if self.when_full == "wait":
            return Admission.WAIT
        if self.when_full == "reject":
            return Admission.REJECT
        return Admission.SPILL

    def count_spilled(self, type: str) -> None:
        """The spill sink took a task of ``type`` that found the queue full."""
        self.stats(type).spilled += 1

    # ------------------------------------------------------------ running

    def take(self) -> PoolEntry | Idle:
        """The next entry for a worker, its attempt started; else what the worker does.

        An entry taken frees a slot in the queue: the driver wakes a submitter
        waiting for room, if any.
        """
        if not self.queue:
            return Idle.EXIT if self.state is PoolState.CLOSED else Idle.WAIT
        self.queued_at.popleft()
        request_id = self.request_ids.popleft()
        item = self.queue.popleft()
        if isinstance(item, PoolEntry):
            entry = item  # back for a retry
        else:  # its stats exist: admit() made them
            entry = PoolEntry(item, self.by_type[item.type], request_id)
        self._start(entry)
        return entry

    def _start(self, entry: PoolEntry) -> None:
        """An attempt of ``entry`` begins: it is running."""
        self.running[entry] = None
        entry.attempt += 1
        entry.stats.started += 1

    def finish(self, entry: PoolEntry, exc: BaseException | None) -> Retry | Done:
        """An attempt of a running entry ended: ``exc`` is what it raised (None: it returned).

        A failure is retried as :func:`~apitask._backoff.next_delay` says
        (the one retry policy), except once the pool is closed: then no
        retry could run, so the failure is final.
        """
        del self.running[entry]
        stats = entry.stats
        if exc is None:
            stats.succeeded += 1
            entry.done = True
            return _SUCCEEDED_LAST if self.drain_waits and self._drain_ends() else SUCCEEDED
        if self.state is not PoolState.CLOSED:
            delay = next_delay(exc, entry.attempt, self.backoff, self.rng)
            if delay is not None:
                stats.retried += 1
                self.retrying.add(entry)
                return Retry(delay, exc)
        stats.failed += 1
        entry.done = True
        return Done(exc, self._drain_ends())

    def cancelled(self, entry: PoolEntry) -> Done:
        """A running attempt was cancelled from outside, not by the task itself.

        An inline entry by its caller: it shared the caller's fate and is done.
        A worker's entry by :meth:`close`: it did not complete, and the report
        lists it as cancelled.
        """
        del self.running[entry]
        entry.stats.cancelled += 1
        if entry.inline:
            entry.done = True
        else:
            entry.cancelled = True
        return Done(None, self._drain_ends())

    def retry_due(self, entry: PoolEntry) -> Literal[Admission.QUEUED]:
        """A retry delay passed: the entry goes back to the end of the queue.

        Above capacity: the task was accepted once, and refusing its retry
        for lack of room would lose it.
        """
        self.retrying.discard(entry)
        self.queue.append(entry)
        self.queued_at.append(self.clock())
        self.request_ids.append(entry.request_id)
        return Admission.QUEUED

    # ------------------------------------------------------------ shutdown

    def begin_drain(self) -> Drain:
        """Stop intake; queued, running and retrying entries may still complete.

        Submitters waiting for room must be woken: :meth:`admit` now answers ``CLOSED``.
        """
        self.state = PoolState.DRAINING
        self.drain_waits = bool(self.queue or self.running or self.retrying)
        return Drain.WAIT if self.drain_waits else Drain.NOTHING

    def _drain_ends(self) -> bool:
        """Whether the drain waits, and the entry that just ended was the last
        one queued, running or waiting to retry (said once)."""
        if not self.drain_waits or self.queue or self.running or self.retrying:
            return False
        self.drain_waits = False
        return True

    def close(self) -> Cancel:
        """The drain is over (done, or its deadline passed): nothing more starts.

        Returns what did not run and what to cancel; a worker that finds no
        entry now exits (:attr:`Idle.EXIT`).
        """
        self.state = PoolState.CLOSED
        self.drain_waits = False
        queued = tuple(
            (item.task, item.request_id) if isinstance(item, PoolEntry) else (item, request_id)
            for item, request_id in zip(self.queue, self.request_ids, strict=True)
        )
        self.queue.clear()
        self.queued_at.clear()
        self.request_ids.clear()
        retrying = tuple(self.retrying)
        self.retrying.clear()
        running = tuple(entry for entry in self.running if not entry.inline)
        return Cancel(queued, retrying, running)

    def leftovers(self, cancel: Cancel) -> list[Leftover]:
        """Describe every entry of ``cancel`` that did not complete, in a stable order.

        Call it once the cancelled workers had their grace: a running entry
        that let go of its cancellation is ``CANCELLED``; one that ignored
        it, or whose sync attempt still holds a thread, is ``STUCK``; one
        that finished anyway is no leftover.
        """
        lefts = [
            describe(task, LeftoverState.QUEUED, request_id) for task, request_id in cancel.queued
        ]
        lefts += [
            describe(left.task, LeftoverState.RETRYING, left.request_id) for left in cancel.retrying
        ]
        for entry in cancel.running:
            if entry.done:
                continue  # it swallowed the cancellation but did finish
            in_thread = entry.thread is not None and not entry.thread.done()
            stuck = in_thread or not entry.cancelled
            state = LeftoverState.STUCK if stuck else LeftoverState.CANCELLED
            lefts.append(describe(entry.task, state, entry.request_id))
        return lefts

    def report(self, timed_out: bool, leftovers: Iterable[Leftover]) -> DrainReport:
        """The final report: each leftover counted as spilled or abandoned."""
        leftovers = tuple(leftovers)
        for left in leftovers:
            stats = self.stats(left.type)
            if left.spilled:
                stats.spilled += 1
            else:
                stats.abandoned += 1
        return DrainReport(timed_out, leftovers)

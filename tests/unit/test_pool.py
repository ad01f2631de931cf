"""WorkerPool: intake, workers, full-queue policies, retries, counters.

Shutdown, drain and spill are in test_pool_shutdown.py; threads in
test_pool_threads.py. Concurrency is ordered with asyncio.Event, never sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import TYPE_CHECKING

import pytest

import apitask
from apitask import (
    Backoff,
    Outcome,
    PoolClosedError,
    PoolState,
    QueueFullError,
    TransientError,
    WorkerPool,
)
from apitask.outbox import JobTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable


class Gate:
    """A task body that reports it started, then blocks until released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.done = False

    async def __call__(self) -> None:
        self.started.set()
        await self.release.wait()
        self.done = True


async def fill(pool: WorkerPool, gate: Gate) -> None:
    """Occupy the only worker with ``gate`` and fill the 1-slot queue."""
    await pool.submit(apitask.task("test.gate", gate))
    await gate.started.wait()
    await pool.submit(apitask.task("test.queued", asyncio.sleep, 0))


def state_of(pool: WorkerPool) -> PoolState:
    """The pool's state, read through a call so the type checker does not pin it."""
    return pool.state


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop (no timed sleep) until ``condition`` holds."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_hundred_thousand_tasks_each_run_exactly_once() -> None:
    """100,000 submitted tasks: every one runs once, and the counters agree."""
    n = 100_000
    runs = [0] * n

    async def mark(i: int) -> None:
        runs[i] += 1

    async with WorkerPool(workers=8, queue_size=n) as pool:
        for i in range(n):
            await pool.submit(apitask.task("test.mark", mark, i))
    assert pool.report is not None and pool.report.complete
    assert runs == [1] * n
    counts = pool.counters.snapshot()["test.mark"]
    assert counts == {"submitted": n, "started": n, "succeeded": n}


def test_workers_default_to_cpus_times_per_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """workers=None means os.cpu_count() x per_cpu; an explicit count wins."""
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert WorkerPool(per_cpu=5).workers == 15
    assert WorkerPool().workers == 3 * 8
    assert WorkerPool(workers=2, per_cpu=5).workers == 2
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert WorkerPool(per_cpu=4).workers == 4
    assert WorkerPool(workers=100).threads == 32
    assert WorkerPool(workers=4).threads == 4


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"per_cpu": 0}, "per_cpu"),
        ({"workers": 0}, "workers"),
        ({"queue_size": 0}, "queue_size"),
        ({"when_full": "drop"}, "when_full"),
        ({"when_full": "spill"}, "when_full"),  # without a spill sink
        ({"shutdown_timeout": -1}, "shutdown_timeout"),
        ({"cancel_timeout": -1}, "cancel_timeout"),
        ({"spill_timeout": -1}, "spill_timeout"),
        ({"full_timeout": -1}, "full_timeout"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_parameter(
    kwargs: dict[str, object], name: str
) -> None:
    """Every bad setting fails at construction, and the message names it."""
    with pytest.raises(ValueError, match=name):
        WorkerPool(**kwargs)  # type: ignore[arg-type]


async def test_submit_returns_before_the_task_runs_and_workers_bound_concurrency() -> None:
    """With 2 workers, 2 tasks run at once and the 3rd waits in the queue, in order."""
    gates = [Gate() for _ in range(3)]
    async with WorkerPool(workers=2) as pool:
        assert pool.state is PoolState.RUNNING
        for i, gate in enumerate(gates):
            await pool.submit(apitask.task(f"test.gate{i}", gate))
        assert pool.queue_depth == 3  # submit returned before any ran
        await gates[0].started.wait()
        await gates[1].started.wait()
        assert pool.running == 2
        assert pool.queue_depth == 1
        assert not gates[2].started.is_set()
        assert pool.oldest_queued_age > 0.0
        gates[0].release.set()
        await gates[2].started.wait()
        assert pool.oldest_queued_age == 0.0
        for gate in gates:
            gate.release.set()
    assert all(gate.done for gate in gates)


async def test_one_worker_runs_tasks_in_submission_order() -> None:
    """The queue is FIFO."""
    order: list[int] = []

    async def record(i: int) -> None:
        order.append(i)

    async with WorkerPool(workers=1) as pool:
        for i in range(50):
            await pool.submit(apitask.task("test.order", record, i))
    assert order == list(range(50))


async def test_submit_before_start_and_after_close_raises_pool_closed() -> None:
    """A pool takes work only while running; the error is a TaskError."""
    pool = WorkerPool(workers=1)
    noop = apitask.task("test.noop", asyncio.sleep, 0)
    with pytest.raises(PoolClosedError, match="created"):
        await pool.submit(noop)
    async with pool:
        pass
    assert pool.state is PoolState.CLOSED
    with pytest.raises(apitask.TaskError, match="closed"):
        await pool.submit(noop)
    with pytest.raises(RuntimeError, match="started once"):
        await pool.start()


async def test_reject_policy_raises_queue_full_and_counts_nothing() -> None:
    """when_full='reject': the task that does not fit raises QueueFullError, not run."""
    gate = Gate()
    async with WorkerPool(workers=1, queue_size=1, when_full="reject") as pool:
        await fill(pool, gate)
        with pytest.raises(QueueFullError, match="queue is full"):
            await pool.submit(apitask.task("test.rejected", asyncio.sleep, 0))
        gate.release.set()
    assert "test.rejected" not in pool.counters.snapshot()
    assert pool.counters.get("test.queued", Outcome.SUCCEEDED) == 1


class Stash:
    """A spill sink that keeps what it is handed (an outbox stand-in)."""

    def __init__(self) -> None:
        self.tasks: list[apitask.Task] = []

    async def submit(self, task: apitask.Task) -> None:
        self.tasks.append(task)

    def submit_sync(self, task: apitask.Task) -> None:
        self.tasks.append(task)


async def test_spill_policy_hands_the_task_to_the_spill_sink_and_counts_it() -> None:
    """when_full='spill': the task that does not fit goes to the sink (it runs
    elsewhere, later), not inline and not refused."""
    gate, stash = Gate(), Stash()
    overflow = apitask.task("test.overflow", asyncio.sleep, 0)
    async with WorkerPool(workers=1, queue_size=1, when_full="spill", spill=stash) as pool:
        await fill(pool, gate)
        await pool.submit(overflow)
        assert stash.tasks == [overflow]
        gate.release.set()
    assert pool.counters.snapshot()["test.overflow"] == {"spilled": 1}
    assert pool.counters.get("test.queued", Outcome.SUCCEEDED) == 1


async def yield_to_the_loop(times: int = 5) -> None:
    """Let the callbacks that are ready run (no timed sleep): a submit that must
    wait for room reaches its wait within one."""
    for _ in range(times):
        await asyncio.sleep(0)


async def test_wait_policy_waits_for_room_then_queues() -> None:
    """when_full='wait': submit returns once a worker takes a task and frees a slot."""
    gate = Gate()
    ran = asyncio.Event()

    async def mark() -> None:
        ran.set()

    async with WorkerPool(workers=1, queue_size=1, when_full="wait", full_timeout=None) as pool:
        await fill(pool, gate)
        waiting = asyncio.create_task(pool.submit(apitask.task("test.waited", mark)))
        await yield_to_the_loop()
        assert not waiting.done()
        assert pool.queue_depth == 1
        gate.release.set()
        await waiting
        await ran.wait()
    assert pool.counters.get("test.waited", Outcome.SUCCEEDED) == 1


async def test_wait_policy_times_out_with_queue_full_error() -> None:
    """when_full='wait' with full_timeout: no room in time raises QueueFullError."""
    gate = Gate()
    async with WorkerPool(workers=1, queue_size=1, when_full="wait", full_timeout=0) as pool:
        await fill(pool, gate)
        with pytest.raises(QueueFullError, match="stayed full"):
            await pool.submit(apitask.task("test.late", asyncio.sleep, 0))
        gate.release.set()
    assert pool.report is not None and pool.report.complete
    assert "test.late" not in pool.counters.snapshot()


async def test_wait_policy_waiter_finding_the_slot_taken_waits_again() -> None:
    """A waiter woken by a freed slot that another submit took first goes back to
    waiting: the queue never holds more than queue_size."""
    gate, holder = Gate(), Gate()
    order: list[str] = []

    async def record(name: str) -> None:
        order.append(name)

    async def takes_the_slot() -> None:
        # Runs as the worker takes it, before the woken waiter resumes.
        await pool.submit(apitask.task("test.sneak", record, "sneak"))
        await holder()  # keeps the worker busy, so the slot stays taken

    pool = WorkerPool(workers=1, queue_size=1, when_full="wait", full_timeout=None)
    async with pool:
        await pool.submit(apitask.task("test.gate", gate))
        await gate.started.wait()
        await pool.submit(apitask.task("test.holder", takes_the_slot))
        waiting = asyncio.create_task(pool.submit(apitask.task("test.late", record, "late")))
        await yield_to_the_loop()
        gate.release.set()  # the worker takes the holder, which frees the slot and retakes it
        await holder.started.wait()
        await yield_to_the_loop()
        assert not waiting.done()
        assert pool.queue_depth == 1
        holder.release.set()
        await waiting
    assert order == ["sneak", "late"]


async def test_wait_policy_waiter_woken_as_it_gives_up_passes_the_wake_on() -> None:
    """A waiter cancelled just after being woken hands its slot to the next waiter."""
    gate = Gate()
    waiters: list[asyncio.Task[None]] = []

    async def cancel_first_waiter() -> None:
        # Runs as the worker takes it: the first waiter has just been woken.
        waiters[0].cancel()

    async with WorkerPool(workers=1, queue_size=1, when_full="wait", full_timeout=None) as pool:
        await pool.submit(apitask.task("test.gate", gate))
        await gate.started.wait()
        await pool.submit(apitask.task("test.canceller", cancel_first_waiter))
        for name in ("test.first", "test.second"):
            waiters.append(asyncio.create_task(pool.submit(apitask.task(name, asyncio.sleep, 0))))
            await yield_to_the_loop()
        gate.release.set()
        first, second = waiters
        with pytest.raises(asyncio.CancelledError):
            await first
        await second  # without the wake passed on, it would wait for ever
    assert "test.first" not in pool.counters.snapshot()
    assert pool.counters.get("test.second", Outcome.SUCCEEDED) == 1


async def test_wait_policy_waiters_get_pool_closed_when_the_drain_starts() -> None:
    """A submit waiting for room raises PoolClosedError once the pool drains."""
    gate = Gate()
    pool = WorkerPool(workers=1, queue_size=1, when_full="wait", full_timeout=None)
    async with pool:
        await fill(pool, gate)
        waiting = asyncio.create_task(pool.submit(apitask.task("test.late", asyncio.sleep, 0)))
        await yield_to_the_loop()
        closing = asyncio.create_task(pool.aclose())
        with pytest.raises(PoolClosedError, match="draining"):
            await waiting
        gate.release.set()
        report = await closing
    assert report.complete


async def test_inline_policy_runs_the_task_in_the_caller() -> None:
    """when_full='inline' (the default): the overflow task has run when submit returns."""
    gate = Gate()
    ran = False

    async def mark() -> None:
        nonlocal ran
        ran = True

    async with WorkerPool(workers=1, queue_size=1) as pool:
        assert pool.when_full == "inline"
        await fill(pool, gate)
        await pool.submit(apitask.task("test.inline", mark))
        assert ran
        assert pool.queue_depth == 1
        gate.release.set()
    assert pool.counters.snapshot()["test.inline"] == {
        "submitted": 1,
        "started": 1,
        "succeeded": 1,
    }


async def test_sync_function_tasks_run_on_the_pools_own_threads() -> None:
    """A sync FunctionTask runs off the loop, in a thread named after the pool."""
    names: list[str] = []
    loop_thread = threading.current_thread().name

    def where() -> None:
        names.append(threading.current_thread().name)

    async with WorkerPool(workers=2) as pool:
        for _ in range(4):
            await pool.submit(apitask.task("test.sync", where))
    assert len(names) == 4
    assert all(name.startswith("apitask-pool") for name in names)
    assert loop_thread not in names


class Flaky:
    """Fails transiently ``failures`` times, then succeeds (or always fails)."""

    def __init__(self, failures: int, exc: Exception | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self.exc = exc or TransientError("try later")
        self.done = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        self.done.set()


FAST = Backoff(base=0.001, cap=0.002, max_attempts=3)


async def test_transient_failures_are_retried_then_succeed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two TransientErrors then success: 3 attempts, 2 retries counted and logged."""
    flaky = Flaky(failures=2)
    async with WorkerPool(workers=1, backoff=FAST, rng=lambda: 0.0) as pool:
        await pool.submit(apitask.task("test.flaky", flaky))
        await flaky.done.wait()
    assert flaky.calls == 3
    assert pool.counters.snapshot()["test.flaky"] == {
        "submitted": 1,
        "started": 3,
        "retried": 2,
        "succeeded": 1,
    }
    retries = [r for r in caplog.records if "transient error" in r.getMessage()]
    assert len(retries) == 2
    assert all(r.levelno == logging.WARNING for r in retries)


async def test_retries_stop_after_max_attempts_with_a_logged_final_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task that always fails transiently fails for good at max_attempts."""
    flaky = Flaky(failures=10**6)
    async with WorkerPool(workers=1, backoff=FAST, rng=lambda: 1.0) as pool:
        await pool.submit(apitask.task("test.always", flaky))
    assert flaky.calls == 3
    assert pool.counters.get("test.always", Outcome.FAILED) == 1
    assert pool.counters.get("test.always", Outcome.RETRIED) == 2
    [final] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert (
        final.getMessage() == 'apitask: error running "test.always" (attempt 3, final): try later'
    )
    assert final.task_type == "test.always"  # type: ignore[attr-defined]


async def test_other_exceptions_are_final_at_once(caplog: pytest.LogCaptureFixture) -> None:
    """A non-transient exception is not retried; it is logged with type and error."""
    flaky = Flaky(failures=1, exc=ValueError("bad address"))
    async with WorkerPool(workers=1, backoff=FAST) as pool:
        await pool.submit(apitask.task("test.permanent", flaky))
    assert flaky.calls == 1
    assert pool.counters.snapshot()["test.permanent"] == {
        "submitted": 1,
        "started": 1,
        "failed": 1,
    }
    assert "test.permanent" in caplog.text and "bad address" in caplog.text


async def test_a_bare_timeout_error_is_final_as_in_the_outbox() -> None:
    """The pool and the outbox share one rule (apitask._backoff.next_delay): a task's
    own TimeoutError is final; a TransientError, the outbox's job timeout included, retries."""
    timing_out = Flaky(failures=1, exc=TimeoutError("read timed out"))
    job_timeout = Flaky(failures=1, exc=JobTimeoutError("slow attempt"))
    async with WorkerPool(workers=1, backoff=FAST, rng=lambda: 0.0) as pool:
        await pool.submit(apitask.task("test.timeout", timing_out))
        await pool.submit(apitask.task("test.job_timeout", job_timeout))
        await job_timeout.done.wait()
    assert timing_out.calls == 1
    assert pool.counters.snapshot()["test.timeout"] == {"submitted": 1, "started": 1, "failed": 1}
    assert job_timeout.calls == 2
    assert pool.counters.get("test.job_timeout", Outcome.RETRIED) == 1


async def test_retry_after_is_honoured() -> None:
    """retry_after=0 from the task: retried without the backoff's delay (base 1 hour)."""
    flaky = Flaky(failures=1, exc=TransientError("busy", retry_after=0.0))
    slow = Backoff(base=3600.0, cap=3600.0, max_attempts=2)
    async with WorkerPool(workers=1, backoff=slow, shutdown_timeout=60) as pool:
        await pool.submit(apitask.task("test.retry_after", flaky))
        await flaky.done.wait()
    assert pool.counters.get("test.retry_after", Outcome.SUCCEEDED) == 1


async def test_scope_bound_to_the_pool_returns_without_waiting_for_the_task() -> None:
    """apitask.run inside scope(sink=pool) submits; leaving the scope does not wait."""
    gate = Gate()
    async with WorkerPool(workers=1) as pool:
        async with apitask.scope(sink=pool):
            await apitask.run(apitask.task("test.scoped", gate))
        # the scope closed without waiting: the task has not finished
        assert pool.counters.get("test.scoped", Outcome.SUCCEEDED) == 0
        await gate.started.wait()
        gate.release.set()
    assert gate.done
    assert pool.counters.get("test.scoped", Outcome.SUCCEEDED) == 1


async def test_lifespan_starts_and_drains_the_pool() -> None:
    """pool.lifespan(app) runs the pool for the app's lifetime and drains at the end."""
    gate = Gate()
    pool = WorkerPool(workers=1)
    async with pool.lifespan(object()):
        assert state_of(pool) is PoolState.RUNNING
        await pool.submit(apitask.task("test.lifespan", gate))
        await gate.started.wait()
        gate.release.set()
    assert pool.state is PoolState.CLOSED
    assert gate.done


async def test_a_cancelled_error_escaping_a_task_fails_the_task_not_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task whose own await was cancelled fails for good; its worker runs the next task."""
    after = asyncio.Event()

    async def awaits_a_cancelled_future() -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    async def next_task() -> None:
        after.set()

    async with WorkerPool(workers=1) as pool:
        await pool.submit(apitask.task("test.cancelled_inside", awaits_a_cancelled_future))
        await pool.submit(apitask.task("test.next", next_task))
        await after.wait()
    assert pool.counters.get("test.cancelled_inside", Outcome.FAILED) == 1
    assert (
        'error running "test.cancelled_inside" (attempt 1, final): CancelledError()' in caplog.text
    )


async def test_cancelling_a_caller_running_a_task_inline_cancels_that_task() -> None:
    """An inline run belongs to its caller: cancel the caller and the task is cancelled,
    counted, and no longer holds the drain open."""
    gate, inline = Gate(), Gate()
    async with WorkerPool(workers=1, queue_size=1, shutdown_timeout=60) as pool:
        await fill(pool, gate)
        caller = asyncio.create_task(pool.submit(apitask.task("test.inline", inline)))
        await inline.started.wait()
        assert pool.running == 2
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert pool.running == 1
        gate.release.set()
    assert pool.counters.get("test.inline", Outcome.CANCELLED) == 1
    assert pool.report is not None and pool.report.complete


async def test_cancelling_the_inline_caller_the_drain_waits_for_ends_the_drain() -> None:
    """The drain waits for an inline task too; when its caller is cancelled and it was
    the last task in flight, the drain ends there, long before its timeout."""
    gate, inline = Gate(), Gate()
    pool = WorkerPool(workers=1, queue_size=1, shutdown_timeout=60)
    async with pool:
        await fill(pool, gate)
        caller = asyncio.create_task(pool.submit(apitask.task("test.inline", inline)))
        await inline.started.wait()
        gate.release.set()
        await until(lambda: pool.running == 1 and pool.queue_depth == 0)
        closing = asyncio.create_task(pool.aclose())
        await until(lambda: pool.state is PoolState.DRAINING)
        caller.cancel()
        report = await closing
    assert not report.timed_out and report.complete
    assert pool.counters.get("test.inline", Outcome.CANCELLED) == 1


async def test_pooled_tasks_never_see_a_request_scope_even_when_started_inside_one() -> None:
    """Workers run in a context of their own: a pooled task's apitask.run runs inline.

    A pool started inside a request scope (lazily, by a first request) must not
    hand that scope to every task it ever runs: it would be closed long before.
    """
    seen: list[apitask.RequestScope | None] = []
    nested: list[str] = []

    async def inner() -> None:
        nested.append("ran")

    async def body() -> None:
        seen.append(apitask.current_scope())
        await apitask.run(apitask.task("test.inner", inner))

    async with apitask.scope():
        pool = WorkerPool(workers=1)
        await pool.start()
    try:
        await pool.submit(apitask.task("test.outer", body))
    finally:
        await pool.aclose()
    assert seen == [None]
    assert nested == ["ran"]

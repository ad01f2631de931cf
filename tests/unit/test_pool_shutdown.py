"""WorkerPool shutdown: drain, deadline, cancellation, spill, report."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

import pytest

import apitask
from apitask import (
    Backoff,
    DrainReport,
    LeftoverState,
    Outcome,
    PoolClosedError,
    PoolState,
    TaskError,
    TransientError,
    WorkerPool,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from apitask import JSONValue, Task


class Mail:
    """A durable task: it can be rebuilt from its payload. It waits on ``release``."""

    type = "mailer.recovery"

    def __init__(self, to: str, release: asyncio.Event | None = None) -> None:
        self.to = to
        self.release = release or asyncio.Event()
        self.started = asyncio.Event()
        self.sent = False

    async def run(self) -> None:
        self.started.set()
        await self.release.wait()
        self.sent = True

    def payload(self) -> Mapping[str, JSONValue]:
        return {"to": self.to}


class RecordingSink:
    """A TaskSink that records what it is given (an outbox stand-in)."""

    def __init__(self, refuse: str | None = None) -> None:
        self.tasks: list[Task] = []
        self.refuse = refuse

    async def submit(self, task: Task) -> None:
        payload = task.payload() if isinstance(task, apitask.DurableTask) else None
        if payload is not None and payload.get("to") == self.refuse:
            raise TaskError("outbox unavailable")
        self.tasks.append(task)

    def submit_sync(self, task: Task) -> None:  # pragma: no cover - the pool spills async
        raise AssertionError("the pool spills with submit()")


async def test_drain_completes_queued_and_running_tasks_before_closing() -> None:
    """Within the deadline, aclose lets every queued and running task finish."""
    release = asyncio.Event()
    mails = [Mail(f"u{i}@example.com", release) for i in range(5)]
    pool = WorkerPool(workers=2, shutdown_timeout=60)
    async with pool:
        for mail in mails:
            await pool.submit(mail)
        await mails[0].started.wait()
        closing = asyncio.create_task(pool.aclose())
        await _until(lambda: pool.state is PoolState.DRAINING)
        with pytest.raises(PoolClosedError, match="draining"):
            await pool.submit(Mail("late@example.com"))
        assert not closing.done()
        release.set()
        report = await closing
    assert report == DrainReport(timed_out=False, leftovers=())
    assert report.complete
    assert all(mail.sent for mail in mails)
    assert await pool.aclose() is report  # closing again: the same report
    assert pool.state is PoolState.CLOSED


async def test_deadline_cancels_running_reports_queued_and_spills_durable_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tasks blocked beyond the deadline: running ones cancelled, all leftovers
    reported with type and payload; durable ones spilled, the rest abandoned."""
    sink = RecordingSink()
    running, queued = Mail("a@example.com"), Mail("b@example.com")
    plain_started = asyncio.Event()

    async def plain() -> None:
        plain_started.set()
        await asyncio.Event().wait()

    pool = WorkerPool(workers=2, shutdown_timeout=0.01, spill=sink)
    async with pool:
        await pool.submit(running)
        await pool.submit(apitask.task("test.plain", plain))
        await pool.submit(queued)
        await running.started.wait()
        await plain_started.wait()
    report = pool.report
    assert report is not None and report.timed_out
    by_state = {(left.type, left.state): left for left in report.leftovers}
    assert by_state["mailer.recovery", LeftoverState.QUEUED].payload == {"to": "b@example.com"}
    assert by_state["mailer.recovery", LeftoverState.CANCELLED].payload == {"to": "a@example.com"}
    assert by_state["test.plain", LeftoverState.CANCELLED].payload is None
    assert sink.tasks == [queued, running]
    assert [left.type for left in report.spilled] == ["mailer.recovery"] * 2
    assert [left.type for left in report.abandoned] == ["test.plain"]
    counts = pool.counters.snapshot()
    assert counts["mailer.recovery"] == {
        "submitted": 2,
        "started": 1,
        "cancelled": 1,
        "spilled": 2,
    }
    assert counts["test.plain"] == {"submitted": 1, "started": 1, "cancelled": 1, "abandoned": 1}
    abandoned = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in abandoned] == [
        'apitask: task "test.plain" did not complete before shutdown (cancelled), abandoned'
    ]
    spilled = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert spilled[0].endswith(
        'task "mailer.recovery" did not complete before shutdown (queued), spilled'
    )
    # Payloads (a mail's address, body, code) stay in the report, out of the logs.
    assert "example.com" not in caplog.text


async def test_a_failing_spill_is_logged_and_the_task_stays_in_the_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sink refusing one task: that one is abandoned with the error; others spill."""
    sink = RecordingSink(refuse="x@example.com")
    refused, accepted = Mail("x@example.com"), Mail("y@example.com")
    gate = Mail("gate@example.com")
    pool = WorkerPool(workers=1, shutdown_timeout=0, spill=sink)
    async with pool:
        await pool.submit(gate)
        await gate.started.wait()
        await pool.submit(refused)
        await pool.submit(accepted)
    report = pool.report
    assert report is not None
    assert sink.tasks == [accepted, gate]
    [lost] = report.abandoned
    assert lost.payload == {"to": "x@example.com"}
    assert lost.error == "spill failed: TaskError: outbox unavailable"
    assert "could not spill" in caplog.text and "outbox unavailable" in caplog.text
    assert pool.counters.get("mailer.recovery", Outcome.ABANDONED) == 1


async def test_a_spill_that_hangs_is_bounded_by_spill_timeout() -> None:
    """A sink that never returns: the spill gives up, the tasks are abandoned with why."""
    entered = asyncio.Event()

    class HangingSink(RecordingSink):
        async def submit(self, task: Task) -> None:
            entered.set()
            await asyncio.Event().wait()

    queued = [Mail("q1@example.com"), Mail("q2@example.com")]
    gate = Mail("gate@example.com")
    pool = WorkerPool(workers=1, shutdown_timeout=0, spill=HangingSink(), spill_timeout=0.01)
    async with pool:
        await pool.submit(gate)
        await gate.started.wait()
        for mail in queued:
            await pool.submit(mail)
        await pool.submit(apitask.task("test.plain", asyncio.sleep, 0))
    report = pool.report
    assert report is not None and entered.is_set()
    assert not report.spilled
    errors = {left.type: left.error for left in report.abandoned}
    assert errors == {"mailer.recovery": "spill timed out (0.01s)", "test.plain": None}


async def test_payload_that_raises_is_reported_not_spilled() -> None:
    """A durable task whose payload() raises is reported (with why), never spilled."""

    class Broken(Mail):
        def payload(self) -> Mapping[str, JSONValue]:
            raise KeyError("to")

    sink = RecordingSink()
    gate, broken = Mail("gate@example.com"), Broken("z@example.com")
    pool = WorkerPool(workers=1, shutdown_timeout=0, spill=sink)
    async with pool:
        await pool.submit(gate)
        await gate.started.wait()
        await pool.submit(broken)
    report = pool.report
    assert report is not None
    [lost] = report.abandoned
    assert lost.task is broken and lost.payload is None
    assert lost.error == "payload() failed: KeyError: 'to'"
    assert sink.tasks == [gate]


async def test_a_task_ignoring_cancellation_does_not_hang_shutdown() -> None:
    """After the deadline a task that swallows its cancellation is reported as stuck,
    and aclose returns after cancel_timeout instead of waiting for it."""
    started, really_stop, stopped = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        started.set()
        while not really_stop.is_set():
            try:
                await really_stop.wait()
            except asyncio.CancelledError:
                continue  # ignores cancellation
        stopped.set()

    pool = WorkerPool(workers=1, shutdown_timeout=0, cancel_timeout=0.01)
    async with pool:
        await pool.submit(apitask.task("test.stubborn", stubborn))
        await started.wait()
    report = pool.report
    assert report is not None
    [stuck] = report.leftovers
    assert (stuck.type, stuck.state) == ("test.stubborn", LeftoverState.STUCK)
    assert pool.counters.get("test.stubborn", Outcome.ABANDONED) == 1
    assert pool.counters.get("test.stubborn", Outcome.CANCELLED) == 0
    really_stop.set()  # let it end, so the test loop closes cleanly
    await stopped.wait()  # its worker ended in the same step: it found the pool closed
    assert pool.running == 0


async def test_a_task_that_swallows_cancellation_but_finishes_is_not_a_leftover() -> None:
    """Cancelled at the deadline, it catches the cancel and returns: it completed."""
    started = asyncio.Event()

    async def finishes_anyway() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return

    pool = WorkerPool(workers=1, shutdown_timeout=0)
    async with pool:
        await pool.submit(apitask.task("test.finisher", finishes_anyway))
        await started.wait()
    assert pool.report is not None and pool.report.complete
    assert pool.report.timed_out
    assert pool.counters.get("test.finisher", Outcome.SUCCEEDED) == 1


async def test_a_transient_error_after_the_deadline_is_final() -> None:
    """A task that answers its cancellation with TransientError is not retried
    by a closed pool: it counts as failed, not as a leftover."""
    started = asyncio.Event()

    async def transient_on_cancel() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise TransientError("interrupted") from None

    pool = WorkerPool(workers=1, shutdown_timeout=0)
    async with pool:
        await pool.submit(apitask.task("test.interrupted", transient_on_cancel))
        await started.wait()
    assert pool.report is not None and pool.report.complete
    assert pool.counters.get("test.interrupted", Outcome.FAILED) == 1
    assert pool.counters.get("test.interrupted", Outcome.RETRIED) == 0


@pytest.mark.no_blockbuster  # the sync task blocks its own thread on threading.Event
async def test_a_sync_task_still_running_in_its_thread_is_reported_stuck() -> None:
    """Threads cannot be cancelled: a sync task running at the deadline is stuck."""
    started, release = threading.Event(), threading.Event()

    def blocking() -> None:
        started.set()
        release.wait()

    pool = WorkerPool(workers=1, shutdown_timeout=0, cancel_timeout=0)
    async with pool:
        await pool.submit(apitask.task("test.thread", blocking))
        await asyncio.to_thread(started.wait)
    report = pool.report
    assert report is not None
    [stuck] = report.leftovers
    assert (stuck.type, stuck.state) == ("test.thread", LeftoverState.STUCK)
    release.set()


async def test_retries_pending_at_close_are_waited_for_within_the_deadline() -> None:
    """A task waiting for its retry delay keeps the drain open until it ran."""
    calls = 0
    done = asyncio.Event()

    async def once_transient() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientError("soon")
        done.set()

    backoff = Backoff(base=0.001, cap=0.001, max_attempts=2)
    pool = WorkerPool(workers=1, backoff=backoff, shutdown_timeout=60)
    async with pool:
        await pool.submit(apitask.task("test.retry_in_drain", once_transient))
        await _until(lambda: pool.retrying == 1)
    assert done.is_set() and calls == 2
    assert pool.report is not None and pool.report.complete


async def test_retries_still_waiting_at_the_deadline_are_leftovers() -> None:
    """A retry due after the deadline is reported (and spilled) as retrying."""
    sink = RecordingSink()

    class FlakyMail(Mail):
        async def run(self) -> None:
            raise TransientError("mail server busy")

    mail = FlakyMail("r@example.com")
    backoff = Backoff(base=3600.0, cap=3600.0, max_attempts=3)
    pool = WorkerPool(workers=1, backoff=backoff, shutdown_timeout=0, spill=sink)
    async with pool:
        await pool.submit(mail)
        await _until(lambda: pool.retrying == 1)
    report = pool.report
    assert report is not None
    [left] = report.leftovers
    assert (left.state, left.spilled) == (LeftoverState.RETRYING, True)
    assert sink.tasks == [mail]


async def test_closing_a_pool_that_never_started_reports_nothing() -> None:
    """aclose before start: closed, empty report; later submits raise."""
    pool = WorkerPool(workers=1)
    assert await pool.aclose() == DrainReport()
    assert pool.state is PoolState.CLOSED
    with pytest.raises(PoolClosedError):
        await pool.submit(Mail("n@example.com"))


async def test_concurrent_acloses_share_one_drain() -> None:
    """Two aclose calls at once wait for the same drain and get the same report."""
    mail = Mail("c@example.com")
    pool = WorkerPool(workers=1, shutdown_timeout=60)
    await pool.start()
    await pool.submit(mail)
    await mail.started.wait()
    first = asyncio.create_task(pool.aclose())
    second = asyncio.create_task(pool.aclose())
    await _until(lambda: pool.state is PoolState.DRAINING)
    mail.release.set()
    assert await first is await second


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")

"""Request scopes: run, wait and scope, as GoTrue's apitask specifies them.

Each GoTrue test of PR #2146 has a twin here, named after it.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

import apitask
from apitask import ScopeState, TaskError


class Counter:
    def __init__(self) -> None:
        self.n = 0

    async def bump(self) -> None:
        self.n += 1


class Boom(Exception):
    pass


async def fail() -> None:
    raise Boom("sentinel")


# --- GoTrue TestContext ------------------------------------------------------


async def test_context_no_scope_then_scope_then_same_scope_reused() -> None:
    """No scope by default; a scope inside a scope is the very same object."""
    assert apitask.current_scope() is None
    async with apitask.scope() as outer:
        assert apitask.current_scope() is outer
        async with apitask.scope() as inner:
            assert inner is outer
        # leaving the inner block waited for nothing and closed nothing
        assert outer.state.value == "open"
    assert apitask.current_scope() is None
    assert outer.state is ScopeState.CLOSED


# --- GoTrue TestRun -----------------------------------------------------------


async def test_run_success_sixteen_tasks_all_done_after_wait() -> None:
    """16 runs return at once (None); after wait all 16 have run."""
    counter = Counter()
    async with apitask.scope():
        for _ in range(16):
            await apitask.run(apitask.task("test.bump", counter.bump))
            assert counter.n == 0  # started, not yet run: run returned at once
        report = await apitask.wait()
    assert counter.n == 16
    assert report.succeeded == 16


async def test_run_failure_when_async_errors_are_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In a scope, failing tasks never reach the caller; each is logged at ERROR."""
    ran = Counter()

    async def count_then_fail() -> None:
        await ran.bump()
        await fail()

    caplog.set_level(logging.ERROR, logger="apitask")
    async with apitask.scope(request_id="req-7"):
        for _ in range(16):
            await apitask.run(apitask.task("test.fail", count_then_fail))
        report = await apitask.wait()
    assert ran.n == 16
    assert report.failed == 16
    records = [r for r in caplog.records if r.name == "apitask"]
    assert len(records) == 16
    record = records[0]
    assert record.getMessage() == 'apitask: error running "test.fail": sentinel'
    assert record.task_type == "test.fail"  # type: ignore[attr-defined]
    assert record.request_id == "req-7"  # type: ignore[attr-defined]
    assert record.exc_info is not None and record.exc_info[0] is Boom


async def test_run_failure_when_sync_outside_scope_raises_inline() -> None:
    """Without a scope, run runs inline and raises the task's own error."""
    for _ in range(16):
        with pytest.raises(Boom, match="sentinel"):
            await apitask.run(apitask.task("test.fail", fail))
    report = await apitask.wait()  # no-op outside a scope
    assert report == apitask.WaitReport()


async def test_run_outside_scope_has_finished_when_it_returns() -> None:
    """Inline means inline: the work is done when run returns."""
    counter = Counter()
    await apitask.run(apitask.task("test.bump", counter.bump))
    assert counter.n == 1


# --- GoTrue TestMiddleware/Failure: run after wait, through a shared scope ---


async def test_run_after_wait_raises_task_error_and_runs_nothing() -> None:
    """Once waited, the scope refuses work loudly instead of dropping it."""
    counter = Counter()
    async with apitask.scope():
        await apitask.wait()
        with pytest.raises(TaskError, match=r"'test.bump'.*already waited.*not run"):
            await apitask.run(apitask.task("test.bump", counter.bump))
    assert counter.n == 0


async def test_waiting_twice_is_fine() -> None:
    """A second wait returns at once with the same counts."""
    counter = Counter()
    async with apitask.scope():
        await apitask.run(apitask.task("test.bump", counter.bump))
        first = await apitask.wait()
        second = await apitask.wait()
    assert first == second
    assert counter.n == 1


# --- the rest of the contract ---------------------------------------------------


async def test_run_returns_before_the_task_finishes() -> None:
    """run starts the task concurrently: the caller goes on while it is blocked."""
    release = asyncio.Event()
    finished = asyncio.Event()

    async def blocked() -> None:
        await release.wait()
        finished.set()

    async with apitask.scope():
        await apitask.run(apitask.task("test.blocked", blocked))
        assert not finished.is_set()
        release.set()
    assert finished.is_set()


async def test_tasks_started_by_tasks_before_the_close_are_waited() -> None:
    """A task may call run while the scope is open; wait covers the child too."""
    child_started = asyncio.Event()
    release_child = asyncio.Event()
    child_done = asyncio.Event()

    async def child() -> None:
        child_started.set()
        await release_child.wait()
        child_done.set()

    async def parent() -> None:
        await apitask.run(apitask.task("test.child", child))

    async with apitask.scope() as s:
        await apitask.run(apitask.task("test.parent", parent))
        await child_started.wait()  # the parent has returned; only the child runs
        s.close()
        release_child.set()
    assert child_done.is_set()


async def test_task_that_runs_after_the_close_gets_task_error_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A nested run after wait started fails in the parent task; no deadlock."""
    wait_started = asyncio.Event()

    async def parent() -> None:
        await wait_started.wait()
        await apitask.run(apitask.task("test.child", fail))

    caplog.set_level(logging.ERROR, logger="apitask")
    async with apitask.scope() as s:
        await apitask.run(apitask.task("test.parent", parent))
        s.close()  # what wait() does first
        wait_started.set()
        report = await s.wait()
    assert report.failed == 1
    [record] = [r for r in caplog.records if r.name == "apitask"]
    assert "test.parent" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is TaskError


async def test_block_raising_still_waits_for_the_tasks() -> None:
    """The handler raising does not cancel its tasks: they finish first."""
    counter = Counter()
    with pytest.raises(Boom):
        async with apitask.scope():
            await apitask.run(apitask.task("test.bump", counter.bump))
            raise Boom("handler failed")
    assert counter.n == 1


async def test_wait_deadline_cancels_stragglers_and_reports_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the deadline, stragglers are cancelled, awaited, logged and reported."""
    cancelled = asyncio.Event()
    counter = Counter()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    caplog.set_level(logging.WARNING, logger="apitask")
    async with apitask.scope() as s:
        await apitask.run(apitask.task("test.forever", forever))
        await apitask.run(apitask.task("test.bump", counter.bump))
        report = await s.wait(timeout=0.05)
    assert cancelled.is_set()
    assert report.cancelled == ("test.forever",)
    assert report.abandoned == ()
    assert report.succeeded == 1
    assert any("test.forever" in r.getMessage() for r in caplog.records)


async def test_task_ignoring_cancellation_is_reported_abandoned() -> None:
    """A task that swallows cancellation is left running and reported as such."""
    release = asyncio.Event()

    async def stubborn() -> None:
        while True:
            try:
                await release.wait()
                return
            except asyncio.CancelledError:
                continue

    async with apitask.scope() as s:
        await apitask.run(apitask.task("test.stubborn", stubborn))
        report = await s.wait(timeout=0.02)
        assert report.abandoned == ("test.stubborn",)
        assert s.pending == 1
        release.set()
        final = await s.wait()
    assert final.succeeded == 1


async def test_scope_timeout_bounds_the_wait_at_exit() -> None:
    """scope(timeout=...) applies the deadline to the wait on exit."""

    async def forever() -> None:
        await asyncio.Event().wait()

    async with apitask.scope(timeout=0.01) as s:
        await apitask.run(apitask.task("test.forever", forever))
    assert s.pending == 0


class RecordingSink:
    def __init__(self) -> None:
        self.tasks: list[apitask.Task] = []

    async def submit(self, task: apitask.Task) -> None:
        self.tasks.append(task)

    def submit_sync(self, task: apitask.Task) -> None:
        self.tasks.append(task)


async def test_scope_bound_to_a_sink_hands_tasks_over() -> None:
    """With a sink, run submits there and the scope waits for nothing."""
    sink = RecordingSink()
    counter = Counter()
    async with apitask.scope(sink=sink) as s:
        t = apitask.task("test.bump", counter.bump)
        await apitask.run(t)
        assert s.pending == 0
    assert sink.tasks == [t]
    assert counter.n == 0


async def test_scope_bound_to_a_sink_still_refuses_after_wait() -> None:
    """Run after wait is an error whichever way the scope runs its tasks."""
    sink = RecordingSink()
    async with apitask.scope(sink=sink):
        await apitask.wait()
        with pytest.raises(TaskError):
            await apitask.run(apitask.task("test.bump", Counter().bump))
    assert sink.tasks == []

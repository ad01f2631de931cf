"""Request scopes: run, wait and scope, as GoTrue's apitask specifies them.

Each GoTrue test of PR #2146 has a twin here, named after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from typing import Any

import pytest

import apitask
from apitask import ScopeState, TaskError
from apitask._background import background_loop
from apitask._scope import activate, deactivate


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


async def test_concurrent_waits_all_return_once_the_last_task_ends() -> None:
    """Several waiters on one scope: none returns while a task runs, all return after."""
    release = asyncio.Event()
    finished = asyncio.Event()

    async def blocked() -> None:
        await release.wait()
        finished.set()

    parked = [asyncio.Event() for _ in range(3)]

    async def waiter(ready: asyncio.Event) -> bool:
        ready.set()  # wait() parks without yielding first: parked once this is seen
        await apitask.wait()
        return finished.is_set()

    async with apitask.scope():
        await apitask.run(apitask.task("test.blocked", blocked))
        waits = [asyncio.create_task(waiter(ready)) for ready in parked]
        for ready in parked:
            await ready.wait()
        assert not any(w.done() for w in waits)
        release.set()
        assert await asyncio.gather(*waits) == [True, True, True]


async def test_a_cancelled_wait_leaves_the_other_waits_and_the_tasks_alone() -> None:
    """Cancelling one waiter cancels neither the tasks nor another wait on the scope."""
    release = asyncio.Event()
    finished = asyncio.Event()

    async def blocked() -> None:
        await release.wait()
        finished.set()

    parked = [asyncio.Event(), asyncio.Event()]

    async def waiter(ready: asyncio.Event) -> apitask.WaitReport:
        ready.set()  # wait() parks without yielding first: parked once this is seen
        return await apitask.wait()

    async with apitask.scope() as request_scope:
        await apitask.run(apitask.task("test.blocked", blocked))
        doomed, other = (asyncio.create_task(waiter(ready)) for ready in parked)
        for ready in parked:
            await ready.wait()
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert not other.done() and request_scope.pending == 1
        release.set()
        report = await other
    assert finished.is_set()
    assert report.succeeded == 1 and report.cancelled == ()


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


# --- loops and threads ------------------------------------------------------------


async def test_scope_belongs_to_the_loop_it_was_opened_on() -> None:
    """scope() binds the new scope to the running loop."""
    async with apitask.scope() as s:
        assert s.loop is asyncio.get_running_loop()


async def test_a_scope_made_by_hand_binds_to_the_loop_of_its_first_task() -> None:
    """A RequestScope built without a loop takes the loop of its first run."""
    s = apitask.RequestScope()
    unbound = s.loop
    assert unbound is None
    token = activate(s)
    try:
        await apitask.run(apitask.task("test.bump", Counter().bump))
    finally:
        deactivate(token)
    assert s.loop is asyncio.get_running_loop()
    assert (await s.wait()).succeeded == 1


async def test_start_refuses_a_task_from_another_loop() -> None:
    """start() runs on the scope's own loop only; elsewhere it says what to use."""
    other = asyncio.new_event_loop()
    try:
        s = apitask.RequestScope(loop=other)
        with pytest.raises(TaskError, match="another event loop; use start_threadsafe"):
            s.start(apitask.task("test.bump", Counter().bump))
        assert s.pending == 0
    finally:
        other.close()


async def test_start_threadsafe_registers_from_a_thread_with_its_context() -> None:
    """A thread hands a task to the scope's loop; the task sees the thread's context."""
    seen: list[str] = []
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")

    async def record() -> None:
        seen.append(marker.get())

    def from_a_thread(s: apitask.RequestScope) -> None:
        marker.set("thread")
        s.start_threadsafe(apitask.task("test.record", record)).result()

    async with apitask.scope() as s:
        await asyncio.to_thread(from_a_thread, s)
        assert s.pending + len(seen) == 1  # registered when result() returned
    assert seen == ["thread"]


async def test_start_threadsafe_refuses_at_once_when_closed() -> None:
    """A closed scope refuses in the calling thread, before any hop to the loop."""
    s = apitask.RequestScope(loop=asyncio.get_running_loop())
    s.close()
    with pytest.raises(TaskError, match="already waited"):
        s.start_threadsafe(apitask.task("test.bump", Counter().bump))


async def test_start_threadsafe_closed_before_the_loop_registers_fails_the_future() -> None:
    """Closed between the call and the registration: the future carries TaskError."""
    counter = Counter()
    s = apitask.RequestScope(loop=asyncio.get_running_loop())
    registered = s.start_threadsafe(apitask.task("test.bump", counter.bump))
    s.close()  # the loop has not run the registration yet
    with pytest.raises(TaskError, match="already waited"):
        await asyncio.wrap_future(registered)
    assert counter.n == 0


def test_start_threadsafe_on_a_closed_loop_raises_task_error() -> None:
    """A scope whose loop is gone refuses clearly instead of losing the task."""
    loop = asyncio.new_event_loop()
    loop.close()
    s = apitask.RequestScope(loop=loop)
    with pytest.raises(TaskError, match="event loop of its request scope is closed"):
        s.start_threadsafe(apitask.task("test.bump", Counter().bump))


def test_a_scope_first_used_from_sync_code_runs_on_the_background_loop() -> None:
    """No loop in this thread: the scope binds to apitask's background loop."""
    counter = Counter()
    s = apitask.RequestScope()
    s.start_threadsafe(apitask.task("test.bump", counter.bump)).result()
    assert s.loop is background_loop()
    report = s.wait_sync()
    assert report.succeeded == 1 and counter.n == 1
    assert s.wait_sync() == report  # closed and empty: returns at once


def test_wait_sync_on_a_scope_that_never_ran_anything_just_closes_it() -> None:
    """Nothing ran, so nothing to wait for: no loop is involved."""
    s = apitask.RequestScope()
    assert s.wait_sync() == apitask.WaitReport()
    assert s.state is ScopeState.CLOSED
    assert s.loop is None


async def test_wait_sync_on_the_scopes_own_loop_refuses_instead_of_deadlocking() -> None:
    """Blocking the loop the tasks need would hang forever: raise instead."""
    s = apitask.RequestScope(loop=asyncio.get_running_loop())
    with pytest.raises(RuntimeError, match="await wait"):
        s.wait_sync()


async def test_run_and_wait_from_another_loop_reach_the_scopes_loop() -> None:
    """A coroutine on another loop (asyncio.run in a WSGI thread) hops, without blocking."""
    counter = Counter()
    s = apitask.RequestScope(loop=background_loop())
    token = activate(s)
    try:
        await apitask.run(apitask.task("test.bump", counter.bump))
        report = await apitask.wait()
    finally:
        deactivate(token)
    assert report.succeeded == 1 and counter.n == 1


# --- counters and options ----------------------------------------------------------


async def test_outcomes_are_counted_by_type_once_the_scope_is_idle() -> None:
    """Successes, failures and cancellations land in scope_counters."""
    before = apitask.scope_counters.snapshot().get("test.counted", {})

    async def forever() -> None:
        await asyncio.Event().wait()

    async with apitask.scope(timeout=0.01):
        for _ in range(3):
            await apitask.run(apitask.task("test.counted", Counter().bump))
        await apitask.run(apitask.task("test.counted", fail))
        await apitask.run(apitask.task("test.counted", forever))
    after = apitask.scope_counters.snapshot()["test.counted"]
    assert after.get("succeeded", 0) - before.get("succeeded", 0) == 3
    assert after.get("failed", 0) - before.get("failed", 0) == 1
    assert after.get("cancelled", 0) - before.get("cancelled", 0) == 1


async def test_abandoned_tasks_are_counted() -> None:
    """A task that ignores cancellation past the deadline counts as abandoned."""
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    before = apitask.scope_counters.get("test.stubborn2", apitask.Outcome.ABANDONED)
    async with apitask.scope(timeout=0.01) as s:
        await apitask.run(apitask.task("test.stubborn2", stubborn))
    assert apitask.scope_counters.get("test.stubborn2", apitask.Outcome.ABANDONED) == before + 1
    release.set()
    await s.wait()


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"timeout": 0}, ValueError, "timeout must be positive"),
        ({"timeout": "5"}, TypeError, "timeout must be a number"),
        ({"sink": object()}, TypeError, "sink must be a TaskSink"),
    ],
)
def test_scope_refuses_unusable_options(
    options: dict[str, object], error: type[Exception], match: str
) -> None:
    """Bad options fail where they are written, naming the option."""
    with pytest.raises(error, match=match):
        apitask.scope(**options)  # type: ignore[arg-type]


async def test_a_task_finished_eagerly_by_the_task_factory_is_not_waited_for() -> None:
    """With an eager task factory (Python 3.12's asyncio.eager_task_factory) a task
    may end inside create_task: the scope must not wait for it forever."""
    loop = asyncio.get_running_loop()

    def eager(
        loop: asyncio.AbstractEventLoop, coro: Any, context: contextvars.Context | None = None
    ) -> asyncio.Future[None]:
        done: asyncio.Future[None] = loop.create_future()
        with contextlib.suppress(StopIteration):
            coro.send(None)  # a no-op coroutine ends in its first step
        done.set_result(None)
        return done

    counter = Counter()
    loop.set_task_factory(eager)  # type: ignore[arg-type]
    try:
        async with apitask.scope() as s:
            await apitask.run(apitask.task("test.bump", counter.bump))
            assert s.pending == 0
    finally:
        loop.set_task_factory(None)
    assert counter.n == 1
    assert (await s.wait()).succeeded == 1


async def test_a_straggler_cancelled_before_its_first_step_is_released() -> None:
    """Cancelled before it ever ran, a task cannot release itself: the deadline path does."""
    counter = Counter()
    s = apitask.RequestScope(loop=asyncio.get_running_loop())
    s.start(apitask.task("test.unstarted", counter.bump))
    s.close()
    # What wait() does at its deadline, here before the loop ran the task at all.
    cancelled, abandoned = await s._cancel_stragglers(None)
    assert (cancelled, abandoned) == (("test.unstarted",), ())
    assert s.pending == 0 and counter.n == 0
    assert (await s.wait()).succeeded == 0


async def test_tasks_done_before_the_deadline_are_simply_waited() -> None:
    """A deadline that is not reached changes nothing: nothing cancelled."""
    counter = Counter()
    async with apitask.scope() as s:
        await apitask.run(apitask.task("test.bump", counter.bump))
        report = await s.wait(timeout=30)
    assert report == apitask.WaitReport(succeeded=1)
    assert counter.n == 1


async def test_drain_is_a_deprecated_wait() -> None:
    """RequestScope.drain(), the old name, still closes and waits, and warns."""
    counter = Counter()
    request_scope = apitask.RequestScope(loop=asyncio.get_running_loop())
    request_scope.start(apitask.task("test.bump", counter.bump))
    with pytest.warns(DeprecationWarning, match=r"use wait\(\)"):
        assert await request_scope.drain() == ((), ())
    assert counter.n == 1
    assert request_scope.state is ScopeState.CLOSED and request_scope.pending == 0


async def test_settle_closes_and_gives_what_to_await_for_the_tasks() -> None:
    release = asyncio.Event()
    done: list[str] = []

    async def job() -> None:
        await release.wait()
        done.append("job")

    scope = apitask.RequestScope(loop=asyncio.get_running_loop())
    token = activate(scope)
    try:
        await apitask.run(apitask.task("t.job", job))
        settling = scope.settle()
        assert scope.state is ScopeState.CLOSED
        assert isinstance(settling, asyncio.Future)  # a bare future: no coroutine per request
        release.set()
        await settling
        assert done == ["job"] and scope.pending == 0
        assert scope.settle() is None  # nothing left: nothing to await
    finally:
        deactivate(token)


async def test_settle_beside_another_wait_gets_its_own_future_and_both_wake() -> None:
    """A second wait on a scope (a settle while a wait is pending) is woken too."""
    release = asyncio.Event()

    async def job() -> None:
        await release.wait()

    scope = apitask.RequestScope(loop=asyncio.get_running_loop())
    scope.start(apitask.task("t.job", job))
    first = scope.settle()
    second = scope.settle()
    assert isinstance(first, asyncio.Future) and isinstance(second, asyncio.Future)
    assert first is not second
    release.set()
    async with asyncio.timeout(5):
        await first
        await second
    assert scope.pending == 0


async def test_settle_with_a_timeout_is_wait() -> None:
    async def stuck() -> None:
        await asyncio.Event().wait()

    scope = apitask.RequestScope(loop=asyncio.get_running_loop())
    token = activate(scope)
    try:
        await apitask.run(apitask.task("t.stuck", stuck))
        settling = scope.settle(0.01)
        assert settling is not None
        report = await settling
        assert report == apitask.WaitReport(cancelled=("t.stuck",))
    finally:
        deactivate(token)

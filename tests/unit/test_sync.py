"""run_sync: the call site for sync code, and the background loop behind it."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import apitask
from apitask import TaskError, _background
from apitask._background import background_loop


class Boom(Exception):
    pass


class RecordingSink:
    def __init__(self) -> None:
        self.submitted: list[apitask.Task] = []

    async def submit(self, task: apitask.Task) -> None:
        raise AssertionError("sync code must use submit_sync")

    def submit_sync(self, task: apitask.Task) -> None:
        self.submitted.append(task)


# --- outside a scope: inline, errors raised ------------------------------------------


def test_sync_function_runs_inline_in_the_calling_thread() -> None:
    """Outside a scope a sync task runs right here, before run_sync returns."""
    threads: list[int] = []
    apitask.run_sync(apitask.task("test.sync", lambda: threads.append(threading.get_ident())))
    assert threads == [threading.get_ident()]


def test_sync_function_error_is_raised_to_the_caller() -> None:
    """Inline means the task's own error reaches the caller (GoTrue Run without a worker)."""

    def fail() -> None:
        raise Boom("sync")

    for _ in range(16):
        with pytest.raises(Boom, match="sync"):
            apitask.run_sync(apitask.task("test.fail", fail))


def test_async_task_runs_to_completion_on_the_background_loop() -> None:
    """An async task from a loop-less thread runs on the background loop; run_sync waits."""
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    seen: list[tuple[str, asyncio.AbstractEventLoop]] = []

    async def record() -> None:
        seen.append((marker.get(), asyncio.get_running_loop()))

    marker.set("caller")
    apitask.run_sync(apitask.task("test.async", record))
    assert seen == [("caller", background_loop())]


def test_async_task_error_is_raised_to_the_caller() -> None:
    """The async task's own error crosses back to the calling thread."""

    async def fail() -> None:
        raise Boom("async")

    with pytest.raises(Boom, match="async"):
        apitask.run_sync(apitask.task("test.fail", fail))


async def test_async_task_inline_on_a_running_loop_is_refused() -> None:
    """Waiting for it would block this loop: a clear TaskError, and nothing runs."""
    ran: list[int] = []

    async def work() -> None:
        ran.append(1)

    with pytest.raises(TaskError, match=r"'test\.async'.*await apitask\.run"):
        apitask.run_sync(apitask.task("test.async", work))
    assert ran == []


# --- inside a scope --------------------------------------------------------------------


async def test_sync_code_on_the_scopes_loop_starts_the_task_without_waiting() -> None:
    """Sync code called from async code (same loop): run_sync returns at once."""
    release = asyncio.Event()
    done = asyncio.Event()

    async def blocked() -> None:
        await release.wait()
        done.set()

    async with apitask.scope() as s:
        apitask.run_sync(apitask.task("test.blocked", blocked))
        assert s.pending == 1 and not done.is_set()
        release.set()
    assert done.is_set()


async def test_a_thread_of_an_async_app_hands_tasks_to_the_scopes_loop() -> None:
    """A sync endpoint in a thread pool (FastAPI `def`): the task joins the request's scope."""
    release = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    def blocking_mail() -> None:
        release.wait()

    async def on_loop() -> None:
        loops.append(asyncio.get_running_loop())

    def endpoint() -> None:
        apitask.run_sync(apitask.task("test.mail", blocking_mail))
        apitask.run_sync(apitask.task("test.loop", on_loop))

    async with apitask.scope() as s:
        await asyncio.to_thread(endpoint)
        assert s.pending >= 1  # the blocking one is still running
        release.set()
    assert loops == [asyncio.get_running_loop()]
    assert s.pending == 0


async def test_run_sync_after_wait_raises_task_error() -> None:
    """Run after wait fails loudly from sync code too."""
    async with apitask.scope():
        await apitask.wait()
        with pytest.raises(TaskError, match="already waited"):
            apitask.run_sync(apitask.task("test.noop", lambda: None))


async def test_scope_bound_to_a_sink_submits_sync() -> None:
    """Inside a sink-bound scope, sync code uses the sink's submit_sync."""
    sink = RecordingSink()
    t = apitask.task("test.noop", lambda: None)
    async with apitask.scope(sink=sink) as s:
        apitask.run_sync(t)
        assert s.pending == 0
        await apitask.wait()
        with pytest.raises(TaskError):
            apitask.run_sync(t)
    assert sink.submitted == [t]


# --- the background loop -------------------------------------------------------------


def test_background_loop_is_one_loop_in_one_daemon_thread() -> None:
    """Every caller gets the same loop, run by a daemon thread named apitask-loop."""
    loop = background_loop()
    assert background_loop() is loop
    thread_of_loop = asyncio.run_coroutine_threadsafe(_current_thread(), loop).result()
    assert thread_of_loop.name == "apitask-loop"
    assert thread_of_loop.daemon


async def _current_thread() -> threading.Thread:
    return threading.current_thread()


def test_a_forked_child_starts_its_own_background_loop() -> None:
    """After fork the parent's loop thread does not exist: the child makes a fresh one."""
    parent_loop = background_loop()
    _background._forget_after_fork()
    child_loop = background_loop()
    try:
        assert child_loop is not parent_loop
        thread = asyncio.run_coroutine_threadsafe(_current_thread(), child_loop).result()
        assert thread.name == "apitask-loop"
    finally:
        child_loop.call_soon_threadsafe(child_loop.stop)
        thread.join()
        child_loop.close()
        _background._loop = parent_loop

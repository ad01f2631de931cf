"""apitask.task: plain functions as tasks."""

from __future__ import annotations

import functools
import threading

import pytest

import apitask


async def test_async_function_is_awaited_with_its_arguments() -> None:
    """An async function runs on the loop with the bound args and kwargs."""
    seen: list[tuple[int, str]] = []

    async def record(n: int, *, label: str) -> None:
        seen.append((n, label))

    t = apitask.task("test.async", record, 1, label="a")
    assert t.type == "test.async"
    assert t.is_async
    await t.run()
    assert seen == [(1, "a")]


async def test_sync_function_runs_in_a_worker_thread() -> None:
    """A sync function never runs on the event loop's thread."""
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def record() -> None:
        threads.append(threading.get_ident())

    t = apitask.task("test.sync", record)
    assert not t.is_async
    await t.run()
    assert threads and threads[0] != loop_thread


async def test_callable_instance_with_async_call_is_async() -> None:
    """An object whose __call__ is async counts as an async function."""

    class Job:
        def __init__(self) -> None:
            self.ran = False

        async def __call__(self) -> None:
            self.ran = True

    job = Job()
    t = apitask.task("test.callable", job)
    assert t.is_async
    await t.run()
    assert job.ran


def test_run_sync_calls_a_sync_function_in_the_calling_thread() -> None:
    """run_sync is for WSGI code: same thread, errors propagate."""
    threads: list[int] = []
    apitask.task("test.sync", lambda: threads.append(threading.get_ident())).run_sync()
    assert threads == [threading.get_ident()]


def test_run_sync_refuses_an_async_function() -> None:
    """An async function cannot be run without a loop: say so."""

    async def noop() -> None:
        return None

    with pytest.raises(TypeError, match="await run"):
        apitask.task("test.async", noop).run_sync()


@pytest.mark.parametrize("bad", ["", None, 3])
def test_type_must_be_a_non_empty_string(bad: object) -> None:
    """A task without a usable type is refused when built, not when it runs."""
    with pytest.raises(ValueError, match="non-empty string"):
        apitask.task(bad, print)  # type: ignore[call-overload]


def test_fn_must_be_callable() -> None:
    """A non-callable fn is refused with the task type in the message."""
    with pytest.raises(TypeError, match=r"'test\.x': fn must be callable"):
        apitask.task("test.x", 42)  # type: ignore[call-overload]


def test_repr_names_type_and_function() -> None:
    """The repr helps when a task shows up in a log line."""

    def send_mail() -> None:
        return None

    assert "send_mail" in repr(apitask.task("mailer.x", send_mail))
    assert "'mailer.x'" in repr(apitask.task("mailer.x", print))


async def test_bound_methods_and_partials_are_recognised() -> None:
    """Async bound methods and partials of async functions are awaited; sync ones thread."""

    class Mailer:
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send(self, to: str) -> None:
            self.sent.append(to)

        def send_blocking(self, to: str) -> None:
            self.sent.append(to)

    mailer = Mailer()
    assert apitask.task("m", mailer.send, "a").is_async
    assert apitask.task("m", functools.partial(mailer.send, "b")).is_async
    assert not apitask.task("m", mailer.send_blocking, "c").is_async
    for t in (
        apitask.task("m", mailer.send, "a"),
        apitask.task("m", functools.partial(mailer.send, "b")),
        apitask.task("m", mailer.send_blocking, "c"),
    ):
        await t.run()
    assert mailer.sent == ["a", "b", "c"]

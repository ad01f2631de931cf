"""apitask.wsgi.TaskMiddleware and run_sync with tiny raw WSGI apps, in real threads.

The WSGI server is this test: it calls the app, iterates the body and closes
it, as PEP 3333 servers do. Tasks run on apitask's background loop (async)
or in its worker threads (sync).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

import apitask
from apitask import TaskError
from apitask._scope import activate, deactivate
from apitask.wsgi import TaskMiddleware

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# How long a test lets something it expects NOT to happen have its chance.
# Only a missing hold can make it matter; correct code never waits on it.
NOT_YET = 0.05


def environ(**extra: Any) -> WSGIEnvironment:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": None, **extra}


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def serve(app: Any, env: WSGIEnvironment | None = None) -> list[bytes]:
    """What a WSGI server does with one request: call, iterate, close."""
    body = app(env or environ(), start_response)
    try:
        return list(body)
    finally:
        body.close()


class Log:
    """A thread-safe, ordered record of events."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, event: str) -> None:
        with self._lock:
            self.events.append(event)


# --- GoTrue TestMiddleware/Success and /Failure --------------------------------------


def test_middleware_success_same_request_ten_times_fresh_scope_each() -> None:
    """Each call gets a fresh scope; its 10 tasks are done when the body is closed."""
    results: list[Exception | None] = []
    scopes: list[apitask.RequestScope | None] = []  # held, so no id is reused
    done = Log()

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        scopes.append(apitask.current_scope())
        for _ in range(10):
            try:
                apitask.run_sync(apitask.task("test.done", done, "task"))
            except Exception as exc:  # pragma: no cover - the assertion below says why
                results.append(exc)
            else:
                results.append(None)
        start("200 OK", [])
        return [b"ok"]

    middleware = TaskMiddleware(app)
    request = environ()
    for served in range(1, 11):
        assert serve(middleware, request) == [b"ok"]
        assert len(results) == len(done.events) == 10 * served
    assert results == [None] * 100
    assert len({id(s) for s in scopes}) == 10 and None not in scopes
    assert apitask.current_scope() is None


def test_middleware_failure_outer_scope_is_shared_and_waited() -> None:
    """An outer scope is reused; after the first request waited it, runs raise TaskError."""
    results: list[Exception | None] = []

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        for _ in range(10):
            try:
                apitask.run_sync(apitask.task("test.noop", _noop))
            except TaskError as exc:
                results.append(exc)
            else:
                results.append(None)
        start("200 OK", [])
        return [b"ok"]

    outer = apitask.RequestScope()
    token = activate(outer)
    try:
        serve(TaskMiddleware(app), environ())
        assert results == [None] * 10
        assert outer.state is apitask.ScopeState.CLOSED
        serve(TaskMiddleware(app), environ())
    finally:
        deactivate(token)
    assert len(results) == 20
    assert all(isinstance(r, TaskError) for r in results[10:])


def _noop() -> None:
    return None


# --- before_response / after_response --------------------------------------------------


def test_before_response_withholds_the_last_chunk_until_the_tasks_finish() -> None:
    """Earlier chunks go out; the last one waits for the task, which is not cancelled."""
    release = threading.Event()
    log = Log()

    def mail() -> None:
        release.wait()
        log("task done")

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterator[bytes]:
        apitask.run_sync(apitask.task("test.mail", mail))
        start("200 OK", [])
        yield b"a"
        yield b"b"

    body = iter(TaskMiddleware(app)(environ(), start_response))
    assert next(body) == b"a"  # flows while the task is blocked
    got_last = threading.Event()

    def read_last() -> None:
        log(next(body).decode())
        got_last.set()

    reader = threading.Thread(target=read_last)
    reader.start()
    assert not got_last.wait(NOT_YET)  # held: the task is still blocked
    release.set()
    reader.join()
    assert log.events == ["task done", "b"]


def test_before_response_with_an_empty_body_still_waits() -> None:
    """No chunk to hold: iteration ends only after the tasks."""
    log = Log()

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        apitask.run_sync(apitask.task("test.log", log, "task done"))
        start("204 No Content", [])
        return []

    body = TaskMiddleware(app)(environ(), start_response)
    assert list(body) == []
    assert log.events == ["task done"]


def test_after_response_sends_the_body_and_waits_in_close() -> None:
    """Every chunk goes out while the task runs; close() returns after it."""
    release = threading.Event()
    log = Log()

    def mail() -> None:
        release.wait()
        log("task done")

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        apitask.run_sync(apitask.task("test.mail", mail))
        start("200 OK", [])
        return [b"a", b"b"]

    body = TaskMiddleware(app, wait="after_response")(environ(), start_response)
    assert list(body) == [b"a", b"b"]  # the task is still blocked on release
    closed = threading.Event()

    def close() -> None:
        body.close()  # type: ignore[attr-defined]
        log("closed")
        closed.set()

    closer = threading.Thread(target=close)
    closer.start()
    assert not closed.wait(NOT_YET)
    release.set()
    closer.join()
    assert log.events == ["task done", "closed"]


# --- failures, disconnects, deadlines -------------------------------------------------


@pytest.mark.parametrize("wait", ["before_response", "after_response"])
def test_app_raising_still_waits_for_the_tasks(wait: Any) -> None:
    """The error reaches the server only after the tasks are done."""
    log = Log()

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        apitask.run_sync(apitask.task("test.slow", _slow_log, log))
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        TaskMiddleware(app, wait=wait)(environ(), start_response)
    log("raised")
    assert log.events == ["task done", "raised"]


def _slow_log(log: Log) -> None:
    time.sleep(0.01)  # in a worker thread: blockbuster would object on the loop
    log("task done")


@pytest.mark.parametrize("wait", ["before_response", "after_response"])
def test_client_gone_the_server_closes_early_and_close_waits(wait: Any) -> None:
    """The server closes the body after one chunk: the app's close runs, then the tasks end."""
    log = Log()

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterator[bytes]:
        apitask.run_sync(apitask.task("test.slow", _slow_log, log))
        start("200 OK", [])
        try:
            yield b"a"
            yield b"b"
            yield b"c"
        finally:
            log("app closed")

    body = TaskMiddleware(app, wait=wait)(environ(), start_response)
    assert next(iter(body)) == b"a"
    body.close()  # type: ignore[attr-defined]
    log("close returned")
    assert log.events[-1] == "close returned"
    assert sorted(log.events[:2]) == ["app closed", "task done"]


def test_timeout_cancels_stragglers(caplog: pytest.LogCaptureFixture) -> None:
    """Past the deadline an async straggler is cancelled and logged; the body goes out."""
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        apitask.run_sync(apitask.task("test.forever", forever))
        start("200 OK", [])
        return [b"ok"]

    caplog.set_level(logging.WARNING, logger="apitask")
    assert serve(TaskMiddleware(app, timeout=0.01), environ()) == [b"ok"]
    assert cancelled.is_set()
    assert any("test.forever" in r.getMessage() for r in caplog.records)


# --- scopes in lazy bodies, nesting, request ids, sinks -------------------------------------


def test_a_lazy_body_can_run_tasks_while_it_is_iterated() -> None:
    """The scope is current again around each chunk: run_sync works in a generator body."""
    log = Log()

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterator[bytes]:
        start("200 OK", [])
        yield b"a"
        apitask.run_sync(apitask.task("test.log", log, "task done"))
        yield b"b"

    assert serve(TaskMiddleware(app, wait="after_response"), environ()) == [b"a", b"b"]
    assert log.events == ["task done"]


def test_tasks_that_run_tasks_are_waited_for_too() -> None:
    """A sync task (a worker thread) and an async one (the loop) each start a child."""
    log = Log()
    children_started = [threading.Event(), threading.Event()]

    def sync_parent() -> None:
        apitask.run_sync(apitask.task("test.child", log, "sync child"))
        children_started[0].set()
        log("sync parent")

    async def async_parent() -> None:
        apitask.run_sync(apitask.task("test.child", log, "async child"))  # on the loop
        children_started[1].set()
        log("async parent")

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        apitask.run_sync(apitask.task("test.parent", sync_parent))
        apitask.run_sync(apitask.task("test.parent", async_parent))
        for started in children_started:  # before the response closes the scope
            started.wait()
        start("200 OK", [])
        return [b"ok"]

    serve(TaskMiddleware(app), environ())
    assert sorted(log.events) == ["async child", "async parent", "sync child", "sync parent"]


def test_request_id_comes_from_the_header_else_is_generated() -> None:
    """X-Request-Id (HTTP_X_REQUEST_ID) is used when sent."""
    ids: list[str | None] = []

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        current = apitask.current_scope()
        assert current is not None
        ids.append(current.request_id)
        start("200 OK", [])
        return []

    serve(TaskMiddleware(app), environ(HTTP_X_REQUEST_ID="req-9"))
    serve(TaskMiddleware(app), environ())
    assert ids[0] == "req-9"
    assert ids[1] is not None and re.fullmatch(r"[0-9a-f]{32}", ids[1])


def test_sink_receives_the_tasks_with_submit_sync() -> None:
    """A sink-bound middleware hands tasks over; the request waits for nothing."""
    submitted: list[apitask.Task] = []

    class Sink:
        async def submit(self, task: apitask.Task) -> None:
            raise AssertionError("sync code submits with submit_sync")

        def submit_sync(self, task: apitask.Task) -> None:
            submitted.append(task)

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        apitask.run_sync(apitask.task("test.noop", _noop))
        start("200 OK", [])
        return [b"ok"]

    assert serve(TaskMiddleware(app, sink=Sink()), environ()) == [b"ok"]
    assert [t.type for t in submitted] == ["test.noop"]


def test_options_are_checked_like_the_asgi_middleware() -> None:
    """The same checks, naming the option."""
    with pytest.raises(ValueError, match="wait must be one of"):
        TaskMiddleware(_unused_app, wait="later")  # type: ignore[arg-type]


def _unused_app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
    raise AssertionError("not called")  # pragma: no cover - only built, never served


# --- blocking calls never happen on the loop ---------------------------------------------------


def test_sync_tasks_run_in_threads_where_blocking_is_fine() -> None:
    """A blocking sync task succeeds: it never runs on the background loop (blockbuster
    is active there, as the next test shows)."""
    log = Log()

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        apitask.run_sync(apitask.task("test.slow", _slow_log, log))
        start("200 OK", [])
        return [b"ok"]

    before = apitask.scope_counters.get("test.slow", apitask.Outcome.FAILED)
    serve(TaskMiddleware(app), environ())
    assert log.events == ["task done"]
    assert apitask.scope_counters.get("test.slow", apitask.Outcome.FAILED) == before


def test_blocking_on_the_background_loop_is_caught(caplog: pytest.LogCaptureFixture) -> None:
    """The control: an async task that blocks the loop fails under blockbuster."""

    async def blocks_the_loop() -> None:
        time.sleep(0.001)  # noqa: ASYNC251 - the point of the test

    def app(env: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        apitask.run_sync(apitask.task("test.blocker", blocks_the_loop))
        start("200 OK", [])
        return [b"ok"]

    caplog.set_level(logging.ERROR, logger="apitask")
    serve(TaskMiddleware(app), environ())
    [record] = caplog.records
    assert record.exc_info is not None
    assert type(record.exc_info[1]).__name__ == "BlockingError"

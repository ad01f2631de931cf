"""apitask.asgi.TaskMiddleware with tiny raw ASGI apps (no server, no framework).

Apps are driven with our own receive/send callables where the order of
events is the point (httpx.ASGITransport buffers the whole response).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

import apitask
from apitask import TaskError
from apitask.asgi import TaskMiddleware

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from apitask._types import ASGIApp, Message, Receive, Scope, Send


def http_scope(headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": headers or [],
    }


async def receive_request() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Recorder:
    """An ASGI send that records what reaches the server, in order, with a shared log."""

    def __init__(self, log: list[str] | None = None) -> None:
        self.messages: list[Message] = []
        self.log = log if log is not None else []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)
        self.log.append(message["type"])


class Blocked:
    """A task body that says when it started and ends only once released."""

    def __init__(self, log: list[str] | None = None) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = asyncio.Event()
        self.log = log if log is not None else []

    async def __call__(self) -> None:
        self.started.set()
        await self.release.wait()
        self.finished.set()
        self.log.append("task done")


START: Message = {"type": "http.response.start", "status": 200, "headers": []}


def final(body: bytes = b"ok") -> Message:
    return {"type": "http.response.body", "body": body, "more_body": False}


# --- GoTrue TestMiddleware/Success and /Failure --------------------------------------


def ten_runs(
    fn: Callable[[], Awaitable[None]],
    results: list[Exception | None],
    scopes: list[apitask.RequestScope | None],
) -> ASGIApp:
    """GoTrue's test handler: run 10 tasks, record what each run returned, respond."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(apitask.current_scope())
        for _ in range(10):
            try:
                await apitask.run(apitask.task("test.run", fn))
            except TaskError as exc:
                results.append(exc)
            else:
                results.append(None)
        await send(START)
        await send(final())

    return app


async def test_middleware_success_same_request_ten_times_fresh_scope_each() -> None:
    """Each call gets its own scope: 10 runs accepted per call, all done by the response."""
    results: list[Exception | None] = []
    scopes: list[apitask.RequestScope | None] = []
    done = 0

    async def bump() -> None:
        nonlocal done
        done += 1

    middleware = TaskMiddleware(ten_runs(bump, results, scopes))
    request = http_scope()  # the very same request, as in GoTrue's test
    for served in range(1, 11):
        await middleware(request, receive_request, Recorder())
        assert len(results) == 10 * served
        assert done == 10 * served
    assert results == [None] * 100
    assert len({id(s) for s in scopes}) == 10 and None not in scopes
    assert apitask.current_scope() is None


async def test_middleware_failure_outer_scope_is_shared_and_waited() -> None:
    """An outer scope is reused; once the first call waited it, the next call's runs fail."""
    results: list[Exception | None] = []

    middleware = TaskMiddleware(ten_runs(_noop, results, []))
    async with apitask.scope() as outer:
        await middleware(http_scope(), receive_request, Recorder())
        assert results == [None] * 10
        assert outer.state is apitask.ScopeState.CLOSED  # the middleware waited it
        await middleware(http_scope(), receive_request, Recorder())
        assert results[:10] == [None] * 10
        assert len(results) == 20
        assert all(isinstance(r, TaskError) for r in results[10:])
        assert apitask.current_scope() is outer


async def _noop() -> None:
    return None


# --- before_response ----------------------------------------------------------------


async def test_before_response_streams_early_chunks_and_holds_the_last() -> None:
    """The start goes out with the first chunk, earlier chunks at once; the final
    chunk waits for the task."""
    log: list[str] = []
    recorder = Recorder(log)
    first_chunk_out = asyncio.Event()
    mail = Blocked(log)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.mail", mail))
        await send(START)
        assert log == []  # held until the next message
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        # Deadlocks (and times out) unless the chunk went through while the task runs.
        await first_chunk_out.wait()
        mail.release.set()  # the task can finish only from now on...
        await send(final(b"b"))  # ...and the last chunk must wait for it

    async def server_send(message: Message) -> None:
        await recorder(message)
        if message.get("more_body"):
            first_chunk_out.set()

    async with asyncio.timeout(5):
        await TaskMiddleware(app)(http_scope(), receive_request, server_send)
    assert log == [
        "http.response.start",
        "http.response.body",
        "task done",
        "http.response.body",
    ]
    assert [m.get("body") for m in recorder.messages] == [None, b"a", b"b"]


TRAILERS: Message = {"type": "http.response.trailers", "headers": [], "more_trailers": False}


START_T, BODY_T, TRAILERS_T = "http.response.start", "http.response.body", "http.response.trailers"


@pytest.mark.parametrize(
    ("messages", "held", "expected"),
    [
        pytest.param([START, final()], 1, ["task done", START_T, BODY_T], id="single body"),
        pytest.param(
            [START, {"type": "http.response.pathsend", "path": "/tmp/file"}],
            1,
            ["task done", START_T, "http.response.pathsend"],
            id="pathsend",
        ),
        pytest.param(
            [START, {"type": "http.response.zerocopy", "file": 3, "more_body": False}],
            1,
            ["task done", START_T, "http.response.zerocopy"],
            id="zerocopy",
        ),
        pytest.param(
            [{**START, "trailers": True}, final(), {**TRAILERS, "more_trailers": True}, TRAILERS],
            3,
            [START_T, BODY_T, TRAILERS_T, "task done", TRAILERS_T],
            id="trailers: the body goes, the last trailers wait",
        ),
        pytest.param(
            [START, {"type": "http.response.body", "body": b"", "more_body": True}, final()],
            2,
            [START_T, BODY_T, "task done", BODY_T],
            id="an empty chunk flushes the start",
        ),
    ],
)
async def test_before_response_holds_the_message_that_ends_the_response(
    messages: list[Message], held: int, expected: list[str]
) -> None:
    """Only the message that ends the response waits for the task (the start
    right before it goes out with it); it is the default."""
    log: list[str] = []
    mail = Blocked(log)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.mail", mail))
        for i, message in enumerate(messages):
            if i == held:
                mail.release.set()  # the task can finish only from now on
            await send(message)

    await TaskMiddleware(app)(http_scope(), receive_request, Recorder(log))
    assert log == expected


async def test_before_response_sends_the_start_at_once_with_no_task_running() -> None:
    """No task running: nothing will wait, so the start is not held (an event
    stream that starts no task gets its headers before its first event)."""
    recorder = Recorder()
    start_out = asyncio.Event()

    async def server_send(message: Message) -> None:
        await recorder(message)
        start_out.set()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        async with asyncio.timeout(5):
            await start_out.wait()  # deadlocks if the start were held
        await send(final())

    await TaskMiddleware(app)(http_scope(), receive_request, server_send)
    assert recorder.log == ["http.response.start", "http.response.body"]


async def test_before_response_sends_a_start_the_app_returned_after() -> None:
    """An app that returns right after its start (no body) still gets it to the server."""
    recorder = Recorder()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.noop", _noop))
        await send(START)

    await TaskMiddleware(app)(http_scope(), receive_request, recorder)
    assert recorder.messages == [START]


async def test_before_response_drops_the_start_of_an_app_that_raised() -> None:
    """The start held when the app raises never reaches the server, so it can answer 500."""
    recorder = Recorder()
    mail = Blocked()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.mail", mail))
        await send(START)
        mail.release.set()
        raise RuntimeError("handler failed after its start")

    with pytest.raises(RuntimeError, match="after its start"):
        await TaskMiddleware(app)(http_scope(), receive_request, recorder)
    assert mail.finished.is_set()
    assert recorder.messages == []


async def test_before_response_a_second_start_reaches_the_server_after_the_first() -> None:
    """An app that sends two starts gets the server's error, as it would unwrapped:
    the held first start is not silently replaced by the second."""
    recorder = Recorder()
    errors: list[Exception] = []

    async def strict_server(message: Message) -> None:
        if recorder.messages and message["type"] == "http.response.start":
            raise RuntimeError("Expected ASGI message 'http.response.body'")  # as uvicorn
        await recorder(message)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        try:
            await send({**START, "status": 500})
        except RuntimeError as exc:
            errors.append(exc)
        await send(final())

    await TaskMiddleware(app)(http_scope(), receive_request, strict_server)
    assert recorder.messages == [START, final()]
    assert len(errors) == 1


async def test_before_response_a_client_gone_surfaces_at_the_send_that_releases_the_start() -> None:
    """A server whose send raises for a vanished client (ASGI 2.4): the app's final
    send raises after the tasks, for the held start, and the body is not tried."""
    attempts: list[str] = []
    mail = Blocked(attempts)
    raised: list[str] = []

    async def gone(message: Message) -> None:
        attempts.append(message["type"])
        raise OSError("client disconnected")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.mail", mail))
        await send(START)  # held: nothing reached the server yet
        mail.release.set()
        try:
            await send(final())
        except OSError as exc:
            raised.append(str(exc))

    await TaskMiddleware(app)(http_scope(), receive_request, gone)
    assert attempts == ["task done", "http.response.start"]
    assert raised == ["client disconnected"]


async def test_before_response_with_the_tasks_already_done_closes_the_scope_at_the_end() -> None:
    """No task left when the response ends: it goes out in the same step, and the
    scope is closed there all the same (a run after it raises TaskError)."""
    log: list[str] = []
    done = asyncio.Event()
    late: list[BaseException] = []

    async def quick() -> None:
        log.append("task done")
        done.set()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.quick", quick))
        await done.wait()
        await send(START)
        await send(final())
        with pytest.raises(TaskError) as refused:
            await apitask.run(apitask.task("test.late", _noop))
        late.append(refused.value)

    await TaskMiddleware(app)(http_scope(), receive_request, Recorder(log))
    assert log == ["task done", "http.response.start", "http.response.body"]
    assert len(late) == 1


# --- after_response ------------------------------------------------------------------


async def test_after_response_sends_everything_then_returns_after_the_tasks() -> None:
    """The whole response reaches the server while the task runs; the call returns after it."""
    mail = Blocked()
    seen_while_task_ran: list[bool] = []
    response_out = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.mail", mail))
        await send(START)
        await send(final())

    async def server_send(message: Message) -> None:
        seen_while_task_ran.append(not mail.finished.is_set())
        if message["type"] == "http.response.body":
            response_out.set()

    call = asyncio.create_task(
        TaskMiddleware(app, wait="after_response")(http_scope(), receive_request, server_send)
    )
    await response_out.wait()  # the response is out: the task is still blocked
    assert seen_while_task_ran == [True, True]
    assert not call.done()
    mail.release.set()
    await call
    assert mail.finished.is_set()


# --- failures, disconnects, deadlines -------------------------------------------------


async def _raise(receive: Receive, send: Send) -> None:
    raise RuntimeError("handler failed")


async def _client_gone(receive: Receive, send: Send) -> None:
    assert (await receive())["type"] == "http.disconnect"
    await send(START)  # raises, as uvicorn's send does for a vanished client


@pytest.mark.parametrize("wait", ["before_response", "after_response"])
@pytest.mark.parametrize(
    ("ending", "error"), [(_raise, "handler failed"), (_client_gone, "client disconnected")]
)
async def test_handler_raising_or_client_gone_still_waits_for_the_tasks(
    wait: Any, ending: Any, error: str
) -> None:
    """The error propagates only once the tasks are done; they are not cancelled."""
    mail = Blocked()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.mail", mail))
        await ending(receive, send)

    async def disconnect() -> Message:
        return {"type": "http.disconnect"}

    async def gone(message: Message) -> None:
        raise OSError("client disconnected")

    call = asyncio.create_task(TaskMiddleware(app, wait=wait)(http_scope(), disconnect, gone))
    await mail.started.wait()
    assert not call.done()  # it failed in its first step, yet waits for the task
    mail.release.set()
    with pytest.raises(Exception, match=error):
        await call
    assert mail.finished.is_set()


async def test_timeout_cancels_stragglers_and_the_response_goes_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the deadline the straggler is cancelled and logged; the response is sent."""
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.forever", forever))
        await send(START)
        await send(final())

    recorder = Recorder()
    caplog.set_level(logging.WARNING, logger="apitask")
    await TaskMiddleware(app, timeout=0.01)(http_scope(), receive_request, recorder)
    assert cancelled.is_set()
    assert recorder.log == ["http.response.start", "http.response.body"]
    assert any("test.forever" in r.getMessage() for r in caplog.records)


# --- what passes through, request ids, sinks, options --------------------------------------


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
async def test_lifespan_and_websocket_pass_through_untouched(kind: str) -> None:
    """No scope is opened, and the app gets the very same scope, receive and send."""
    seen: list[object] = []
    scope: Scope = {"type": kind}
    recorder = Recorder()

    async def app(s: Scope, receive: Receive, send: Send) -> None:
        seen.extend([s, receive, send, apitask.current_scope()])

    await TaskMiddleware(app)(scope, receive_request, recorder)
    assert seen == [scope, receive_request, recorder, None]


async def test_request_id_comes_from_the_header_else_is_generated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """x-request-id is used when sent and printable; it labels the log of a failing task."""
    ids: list[str | None] = []

    async def fail() -> None:
        raise ValueError("smtp down")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        current = apitask.current_scope()
        assert current is not None
        ids.append(current.request_id)
        await apitask.run(apitask.task("test.fail", fail))
        await send(START)
        await send(final())

    caplog.set_level(logging.ERROR, logger="apitask")
    transport = httpx.ASGITransport(app=TaskMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = await client.get("/", headers={"X-Request-Id": "req-42"})
        second = await client.get("/")
        for unfit in ("a\tforged", "x" * 201):
            assert (await client.get("/", headers={"X-Request-Id": unfit})).text == "ok"
    assert first.text == second.text == "ok"
    assert ids[0] == "req-42"
    for generated in ids[1:]:  # absent, or not fit for a log line
        assert generated is not None and re.fullmatch(r"[0-9a-f]{32}", generated)
    assert [getattr(r, "request_id", None) for r in caplog.records] == ids


async def test_sink_receives_the_tasks_and_the_response_waits_for_nothing() -> None:
    """With a sink, run hands every task to it; nothing runs in the request."""
    submitted: list[apitask.Task] = []

    class Sink:
        async def submit(self, task: apitask.Task) -> None:
            submitted.append(task)

        def submit_sync(self, task: apitask.Task) -> None:
            raise AssertionError("async code submits with submit")

    async def never() -> None:
        raise AssertionError("a sink-bound request must not run its tasks")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.never", never))
        current = apitask.current_scope()
        assert current is not None and current.pending == 0
        await send(START)
        await send(final())

    recorder = Recorder()
    await TaskMiddleware(app, sink=Sink())(http_scope(), receive_request, recorder)
    assert [t.type for t in submitted] == ["test.never"]
    assert recorder.log == ["http.response.start", "http.response.body"]


async def test_a_task_that_runs_tasks_while_the_scope_is_open_is_waited_with_them() -> None:
    """A child started before the response ends joins the scope: both finish first."""
    log: list[str] = []
    child_started = asyncio.Event()

    async def child() -> None:
        log.append("child")

    async def parent() -> None:
        await apitask.run(apitask.task("test.child", child))
        child_started.set()
        log.append("parent")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.parent", parent))
        await child_started.wait()
        await send(START)
        await send(final())

    await TaskMiddleware(app)(http_scope(), receive_request, Recorder(log))
    assert sorted(log[:2]) == ["child", "parent"]
    assert log[2:] == ["http.response.start", "http.response.body"]


async def test_a_task_that_runs_tasks_after_the_response_ended_fails_without_deadlock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once the final body is being held the scope is closed: the nested run raises
    TaskError inside the parent task, which is logged; the response still goes out."""
    log: list[str] = []

    async def parent() -> None:
        await apitask.run(apitask.task("test.child", _noop))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # The parent's first step comes after the final body closed the scope.
        await apitask.run(apitask.task("test.parent", parent))
        await send(START)
        await send(final())

    caplog.set_level(logging.ERROR, logger="apitask")
    await TaskMiddleware(app)(http_scope(), receive_request, Recorder(log))
    assert log == ["http.response.start", "http.response.body"]
    [record] = caplog.records
    assert record.task_type == "test.parent"  # type: ignore[attr-defined]
    assert record.exc_info is not None and record.exc_info[0] is TaskError


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"wait": "sometimes"}, ValueError, "wait must be one of 'before_response'"),
        ({"timeout": -1}, ValueError, "timeout must be positive"),
        ({"timeout": float("nan")}, ValueError, "timeout must be positive"),
        ({"timeout": True}, TypeError, "timeout must be a number"),
        ({"sink": object()}, TypeError, "sink must be a TaskSink.*submit, submit_sync"),
    ],
)
def test_unusable_options_fail_at_construction(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    """A misconfigured middleware fails when built, naming the option."""
    with pytest.raises(error, match=match):
        TaskMiddleware(_app_unused, **options)


def test_options_are_kept() -> None:
    """Valid options are stored as given (timeouts as float seconds)."""
    middleware = TaskMiddleware(_app_unused, wait="after_response", timeout=2)
    assert (middleware.wait, middleware.timeout, middleware.sink) == ("after_response", 2.0, None)


async def _app_unused(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("not called")  # pragma: no cover - only built, never served


# --- blocking calls never happen on the loop ----------------------------------------------


async def test_sync_tasks_block_in_a_thread_never_on_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """blockbuster fails blocking calls on the loop: the sync task's sleep passes, the
    same sleep in an async task (on the loop) is caught and logged as its failure."""

    def blocking_send() -> None:
        time.sleep(0.001)

    async def blocking_on_the_loop() -> None:
        time.sleep(0.001)  # noqa: ASYNC251 - the point of the control

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await apitask.run(apitask.task("test.sync", blocking_send))
        await apitask.run(apitask.task("test.on_loop", blocking_on_the_loop))
        await send(START)
        await send(final())

    caplog.set_level(logging.ERROR, logger="apitask")
    await TaskMiddleware(app)(http_scope(), receive_request, Recorder())
    [record] = caplog.records
    assert record.task_type == "test.on_loop"  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert type(record.exc_info[1]).__name__ == "BlockingError"

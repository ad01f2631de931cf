"""TaskMiddleware under Starlette and FastAPI, added the way their docs add middleware."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import apitask
from apitask import TaskError
from apitask.asgi import TaskMiddleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from starlette.requests import Request

    from apitask._types import ASGIApp, Message, Receive, Scope, Send


def http_scope(path: str, **extensions: dict[str, Any]) -> dict[str, Any]:
    return {
        "extensions": extensions,
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "server": ("test", 80),
        "client": ("127.0.0.1", 1234),
    }


async def serve(
    app: ASGIApp,
    path: str,
    log: list[str],
    on_message: Callable[[Message], None] = lambda message: None,
    **extensions: dict[str, Any],
) -> None:
    """Serve one request, logging each message type the server receives, in order."""
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        log.append(message["type"])
        on_message(message)

    await app(http_scope(path, **extensions), receive, send)


def releasing_at_the_end(app: ASGIApp, release: asyncio.Event) -> ASGIApp:
    """Sets ``release`` when the app sends a message that ends the response: a task
    waiting for it deadlocks unless what the app sent before went out first."""

    async def releasing(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_releasing(message: Message) -> None:
            if message["type"] == "http.response.pathsend" or (
                message["type"] == "http.response.body" and not message.get("more_body")
            ):
                release.set()
            await send(message)

        await app(scope, receive, send_releasing)

    return releasing


# --- FastAPI -----------------------------------------------------------------------


async def test_readme_fastapi_example_works_as_written() -> None:
    """The README's example: add_middleware(TaskMiddleware), run in the endpoint."""
    sent_mail: list[str] = []

    app = FastAPI()
    app.add_middleware(TaskMiddleware)

    async def send_welcome(address: str) -> None:
        sent_mail.append(address)

    @app.post("/signup")
    async def signup(email: str) -> dict[str, str]:
        await apitask.run(apitask.task("mail.welcome", send_welcome, email))
        return {"status": "ok"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/signup", params={"email": "ada@example.com"})
    assert response.json() == {"status": "ok"}
    assert sent_mail == ["ada@example.com"]  # sent before the response completed


async def test_fastapi_sync_endpoint_hands_tasks_to_the_request_scope() -> None:
    """A `def` endpoint runs in a thread: run_sync joins the request's scope from there."""
    log: list[str] = []
    release = threading.Event()

    def blocking_mail() -> None:
        release.wait()
        log.append("task done")

    app = FastAPI()
    app.add_middleware(TaskMiddleware)

    @app.get("/sync")
    def endpoint() -> str:
        apitask.run_sync(apitask.task("mail.sync", blocking_mail))
        release.set()  # the task may finish from now on; the body must wait for it
        return "ok"

    await serve(app, "/sync", log)
    assert log[-1] == "http.response.body"
    assert "task done" in log


async def test_fastapi_after_response_sends_first_and_waits_after() -> None:
    """wait="after_response" as a keyword to add_middleware."""
    log: list[str] = []
    release = asyncio.Event()

    async def mail() -> None:
        await release.wait()
        log.append("task done")

    app = FastAPI()
    app.add_middleware(TaskMiddleware, wait="after_response")

    @app.get("/")
    async def endpoint() -> str:
        await apitask.run(apitask.task("mail.later", mail))
        return "ok"

    response_out = asyncio.Event()

    def on_message(message: Message) -> None:
        if message["type"] == "http.response.body":
            response_out.set()

    call = asyncio.create_task(serve(app, "/", log, on_message))
    await response_out.wait()  # the task is still blocked on release
    assert not call.done()
    release.set()
    await call
    assert log == ["http.response.start", "http.response.body", "task done"]


# --- Starlette ---------------------------------------------------------------------


async def test_starlette_streaming_response_streams_and_holds_only_its_end() -> None:
    """Every chunk of a StreamingResponse flows at once; only the closing message waits."""
    log: list[str] = []
    release = asyncio.Event()
    chunks_out = asyncio.Event()

    async def mail() -> None:
        await release.wait()
        log.append("task done")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"
        await chunks_out.wait()  # deadlocks unless both chunks reached the server
        release.set()

    async def stream(request: Request) -> StreamingResponse:
        await apitask.run(apitask.task("mail.stream", mail))
        return StreamingResponse(chunks())

    app = Starlette(routes=[Route("/", stream)], middleware=[Middleware(TaskMiddleware)])
    chunks_seen = 0

    def on_message(message: Message) -> None:
        nonlocal chunks_seen
        chunks_seen += bool(message.get("more_body"))
        if chunks_seen == 2:
            chunks_out.set()

    async with asyncio.timeout(5):
        await serve(app, "/", log, on_message)
    assert log == [
        "http.response.start",
        "http.response.body",
        "http.response.body",
        "task done",
        "http.response.body",
    ]


async def test_starlette_error_page_goes_out_after_the_tasks() -> None:
    """A handler that raises: Starlette's 500 is sent once the request's tasks are done."""
    log: list[str] = []

    async def mail() -> None:
        await asyncio.sleep(0)
        log.append("task done")

    async def broken(request: Request) -> PlainTextResponse:
        await apitask.run(apitask.task("mail.broken", mail))
        raise RuntimeError("handler failed")

    app = Starlette(routes=[Route("/", broken)], middleware=[Middleware(TaskMiddleware)])
    with pytest.raises(RuntimeError, match="handler failed"):
        await serve(app, "/", log)
    assert log == ["task done", "http.response.start", "http.response.body"]


async def test_starlette_background_task_cannot_run_into_a_finished_scope() -> None:
    """Starlette runs BackgroundTasks after the response, when the scope is waited:
    apitask.run there raises TaskError instead of dropping the work."""
    errors: list[Exception] = []

    async def after() -> None:
        try:
            await apitask.run(apitask.task("mail.late", asyncio.sleep, 0))
        except TaskError as exc:
            errors.append(exc)

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", background=BackgroundTask(after))

    app = Starlette(routes=[Route("/", endpoint)], middleware=[Middleware(TaskMiddleware)])
    await serve(app, "/", [])
    assert len(errors) == 1 and "already waited" in str(errors[0])


async def test_starlette_file_response_by_pathsend_leaves_after_the_tasks(tmp_path: Path) -> None:
    """Under a server with the pathsend extension, FileResponse sends its start and
    one pathsend: both reach the server once the tasks are done."""
    log: list[str] = []
    release = asyncio.Event()
    path = tmp_path / "report.csv"
    await asyncio.to_thread(path.write_text, "a,b\n")

    async def mail() -> None:
        await release.wait()
        log.append("task done")

    async def report(request: Request) -> FileResponse:
        await apitask.run(apitask.task("mail.report", mail))
        return FileResponse(path, media_type="text/csv")  # no mimetypes files read on the loop

    app = Starlette(
        routes=[Route("/", report)],
        middleware=[Middleware(TaskMiddleware), Middleware(releasing_at_the_end, release)],
    )
    sent: list[Message] = []
    async with asyncio.timeout(5):
        await serve(app, "/", log, sent.append, **{"http.response.pathsend": {}})
    assert log == ["task done", "http.response.start", "http.response.pathsend"]
    assert sent[1]["path"] == str(path)


async def test_starlette_base_http_middleware_around_ours_gets_the_response_after_the_tasks() -> (
    None
):
    """A BaseHTTPMiddleware outside ours: call_next returns once the held start comes,
    after the tasks; what its dispatch adds is in the response, nothing is lost."""
    log: list[str] = []
    release = asyncio.Event()

    async def mail() -> None:
        await release.wait()
        log.append("task done")

    async def endpoint(request: Request) -> PlainTextResponse:
        await apitask.run(apitask.task("mail.base", mail))
        return PlainTextResponse("ok")

    async def dispatch(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        log.append("call_next returned")
        response.headers["x-dispatch"] = "seen"
        return response

    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[
            Middleware(BaseHTTPMiddleware, dispatch=dispatch),
            Middleware(TaskMiddleware),
            Middleware(releasing_at_the_end, release),
        ],
    )
    sent: list[Message] = []
    async with asyncio.timeout(5):
        await serve(app, "/", log, sent.append)
    assert log[:3] == ["task done", "call_next returned", "http.response.start"]
    assert (b"x-dispatch", b"seen") in sent[0]["headers"]
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"ok"
    assert log[-1] == "http.response.body" and not sent[-1].get("more_body")

"""The app the end-to-end tests serve with a real uvicorn (see test_uvicorn.py).

``GET /work`` starts a task that blocks until ``GET /release``; ``GET /log``
waits for /work's ASGI call to return, then tells what happened in which
order. Two thin ASGI wrappers record the order from the server's side:

    record_server_side(TaskMiddleware(mark_final_attempt(starlette_app)))

* ``start sent``: the status and headers of /work's response reached uvicorn;
* ``final body sent``: the end of /work's response reached uvicorn;
* ``task done``: the task finished;
* ``call returned``: TaskMiddleware's ASGI call for /work returned.

``/release`` first waits until the app *tried* to send /work's final body, so
a middleware that failed to hold it would have let it through by then.
``GET /start-then-raise/`` sends its start, then raises.

Every path under /work is recorded the same way (``chunk sent`` for a body
chunk with more to come, ``call raised`` when the call raises), and each of
these starts the same blocked task before it answers:

* ``/work/empty/{status}``: an empty 204 or 304;
* ``/work/background``: a Starlette BackgroundTask that logs ``background
  done`` once ``GET /release-background`` lets it;
* ``/work/file``: a FileResponse of the file named in APITASK_E2E_FILE;
* ``/work/late-stream``: a StreamingResponse whose first chunk waits for
  ``GET /first-chunk``, which answers with the log as it was then;
* ``/work/sse``: an event stream that flushes its headers with an empty
  chunk, then waits for ``GET /sse-event`` to send its one event;
* ``/work/stream/{chunks}``: a StreamingResponse of ``chunks`` chunks (for
  the client that goes away: ``final send cancelled`` is logged when its
  held end is cancelled, ``GET /release-when-cancelled`` waits for that);
* ``/work/stream-raise/{when}``: a StreamingResponse whose generator lets the
  task finish, then raises ``before`` or ``after`` its first chunk.

``GET /attempted`` answers once the final body was attempted;
``GET /release-when-gone`` once uvicorn told /work/watched's watcher that the
client went away (/work/watched is /work with that watcher).
``GET /drain`` starts a task that finishes by itself a moment later and
writes the file named in APITASK_E2E_MARKER (the SIGTERM test).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route

import apitask
from apitask.asgi import TaskMiddleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

    from apitask._types import ASGIApp, Message, Receive, Scope, Send

log: list[str] = []
events: dict[str, asyncio.Event] = {}


def event(name: str) -> asyncio.Event:
    return events.setdefault(name, asyncio.Event())


async def blocked_mail() -> None:
    await event("release").wait()
    log.append("task done")


async def slow_mail() -> None:
    await asyncio.sleep(0.3)  # ends on its own, after the response
    Path(os.environ["APITASK_E2E_MARKER"]).write_text("sent")  # noqa: ASYNC240 - tiny file


async def work(request: Request) -> PlainTextResponse:
    await apitask.run(apitask.task("e2e.mail", blocked_mail))
    return PlainTextResponse("done")


async def drain(request: Request) -> PlainTextResponse:
    await apitask.run(apitask.task("e2e.slow", slow_mail))
    return PlainTextResponse("queued")


async def release(request: Request) -> PlainTextResponse:
    await event("final attempted").wait()
    event("release").set()
    return PlainTextResponse("released")


async def get_log(request: Request) -> JSONResponse:
    await event("call returned").wait()
    return JSONResponse(log)


async def start_blocked_mail() -> None:
    await apitask.run(apitask.task("e2e.mail", blocked_mail))


async def empty(request: Request) -> Response:
    await start_blocked_mail()
    return Response(status_code=int(request.path_params["status"]))


async def background_after() -> None:
    await event("background release").wait()
    log.append("background done")


async def with_background(request: Request) -> PlainTextResponse:
    await start_blocked_mail()
    return PlainTextResponse("done", background=BackgroundTask(background_after))


async def release_background(request: Request) -> PlainTextResponse:
    event("background release").set()
    return PlainTextResponse("released")


async def file(request: Request) -> FileResponse:
    await start_blocked_mail()
    return FileResponse(os.environ["APITASK_E2E_FILE"])


async def late_chunks() -> AsyncIterator[bytes]:
    event("generator waiting").set()
    await event("first chunk").wait()
    yield b"a"
    yield b"b"


async def late_stream(request: Request) -> StreamingResponse:
    await start_blocked_mail()
    return StreamingResponse(late_chunks())


async def first_chunk(request: Request) -> JSONResponse:
    await event("generator waiting").wait()
    seen = list(log)  # what reached uvicorn while the generator waited
    event("first chunk").set()
    return JSONResponse(seen)


async def sse_events() -> AsyncIterator[bytes]:
    yield b""  # flushes the status and headers
    await event("sse event").wait()
    yield b"data: hi\n\n"


async def sse(request: Request) -> StreamingResponse:
    await start_blocked_mail()
    return StreamingResponse(sse_events(), media_type="text/event-stream")


async def sse_event(request: Request) -> PlainTextResponse:
    event("sse event").set()
    return PlainTextResponse("sent")


async def chunks(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"a"


async def stream(request: Request) -> StreamingResponse:
    await start_blocked_mail()
    return StreamingResponse(chunks(int(request.path_params["chunks"])))


async def failing_chunks(when: str) -> AsyncIterator[bytes]:
    if when == "after":
        yield b"a"
    event("release").set()
    raise RuntimeError(f"generator failed {when} its first chunk")


async def stream_raise(request: Request) -> StreamingResponse:
    await start_blocked_mail()
    return StreamingResponse(failing_chunks(request.path_params["when"]))


async def attempted(request: Request) -> PlainTextResponse:
    await event("final attempted").wait()
    return PlainTextResponse("attempted")


RELEASE_WHEN = {"gone": "client gone", "cancelled": "final send cancelled"}


async def release_when(request: Request) -> PlainTextResponse:
    await event(RELEASE_WHEN[request.path_params["what"]]).wait()
    event("release").set()
    return PlainTextResponse("released")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def quick_mail() -> None:
    return None


async def start_then_raise(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI app that starts a task, then fails between its start and its body."""
    await apitask.run(apitask.task("e2e.quick", quick_mail))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("failed after the start")


def is_final(message: Message) -> bool:
    return message["type"] == "http.response.body" and not message.get("more_body", False)


def recorded(scope: Scope) -> bool:
    return str(scope.get("path", "")).startswith("/work")


def mark_final_attempt(app: ASGIApp) -> ASGIApp:
    async def marked(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_marking(message: Message) -> None:
            if not (recorded(scope) and is_final(message)):
                await send(message)
                return
            event("final attempted").set()
            try:
                await send(message)
            except asyncio.CancelledError:
                # Starlette's StreamingResponse heard the client leave (ASGI 2.3).
                log.append("final send cancelled")
                event("final send cancelled").set()
                raise

        await app(scope, receive, send_marking)

    return marked


async def watch_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    log.append("client gone")
    event("client gone").set()


def record_server_side(app: ASGIApp) -> ASGIApp:
    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        if not recorded(scope):
            await app(scope, receive, send)
            return

        async def send_recording(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.start":
                log.append("start sent")
            elif is_final(message):
                log.append("final body sent")
            else:
                log.append("chunk sent")

        watcher = None
        if scope["path"] == "/work/watched":
            # The app never reads the request body, so the watcher may take it.
            watcher = asyncio.create_task(watch_for_disconnect(receive))
        try:
            await app(scope, receive, send_recording)
        except Exception:
            log.append("call raised")
            raise
        else:
            log.append("call returned")
        finally:
            event("call returned").set()
            if watcher is not None:
                await watcher

    return recording


starlette_app = Starlette(
    routes=[
        Route("/health", health),
        Route("/work", work),
        Route("/work/watched", work),
        Route("/work/empty/{status}", empty),
        Route("/work/background", with_background),
        Route("/work/file", file),
        Route("/work/late-stream", late_stream),
        Route("/work/sse", sse),
        Route("/work/stream/{chunks}", stream),
        Route("/work/stream-raise/{when}", stream_raise),
        Route("/attempted", attempted),
        Route("/release-when-{what}", release_when),
        Route("/release-background", release_background),
        Route("/first-chunk", first_chunk),
        Route("/sse-event", sse_event),
        Route("/drain", drain),
        Route("/release", release),
        Route("/log", get_log),
        Mount("/start-then-raise", app=start_then_raise),
    ]
)
app = record_server_side(
    TaskMiddleware(
        mark_final_attempt(starlette_app),
        wait=os.environ.get("APITASK_WAIT", "before_response"),  # type: ignore[arg-type]
    )
)

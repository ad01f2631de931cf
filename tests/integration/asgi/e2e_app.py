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
``GET /drain`` starts a task that finishes by itself a moment later and
writes the file named in APITASK_E2E_MARKER (the SIGTERM test).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

import apitask
from apitask.asgi import TaskMiddleware

if TYPE_CHECKING:
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


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def start_then_raise(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI app that fails between its start and its body."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("failed after the start")


def is_final(message: Message) -> bool:
    return message["type"] == "http.response.body" and not message.get("more_body", False)


def mark_final_attempt(app: ASGIApp) -> ASGIApp:
    async def marked(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_marking(message: Message) -> None:
            if scope.get("path") == "/work" and is_final(message):
                event("final attempted").set()
            await send(message)

        await app(scope, receive, send_marking)

    return marked


def record_server_side(app: ASGIApp) -> ASGIApp:
    async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("path") != "/work":
            await app(scope, receive, send)
            return

        async def send_recording(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.start":
                log.append("start sent")
            elif is_final(message):
                log.append("final body sent")

        await app(scope, receive, send_recording)
        log.append("call returned")
        event("call returned").set()

    return recorded


starlette_app = Starlette(
    routes=[
        Route("/health", health),
        Route("/work", work),
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

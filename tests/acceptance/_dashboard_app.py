"""A tiny app with apitask's dashboard on a SQLite outbox, served by a real uvicorn.

The outbox file is ``$APITASK_DASHBOARD_DB``. ``/_test/seed`` writes jobs
(two due ones die at once: a broken task and a mail the relay refuses),
``/_test/fix`` repairs the broken task, and ``/_test/work`` runs an outbox
worker until no job is due (outcomes written when it answers). The dashboard lets in
a browser holding the cookie ``operator=ann`` (as "ann").
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from apitask import Backoff, dashboard
from apitask.outbox import JobState, Outbox, TaskRegistry, open_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from starlette.requests import Request


class Flaky:
    """Fails for good while ``broken`` is set; records its runs."""

    broken: ClassVar[bool] = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.type = "report.build"

    def payload(self) -> Mapping[str, Any]:
        return {"name": self.name}

    async def run(self) -> None:
        if Flaky.broken:
            raise RuntimeError(f"report {self.name}: the storage bucket is read-only")


class RefusedMail:
    """A signup mail the relay refuses (its body holds a code the page must not show)."""

    def __init__(self, to: str) -> None:
        self.to = to
        self.type = "mailer.signup"

    def payload(self) -> Mapping[str, Any]:
        return {
            "message": {
                "to": self.to,
                "subject": "Confirm your sign-up",
                "html": "<p>Your code: 771234</p>",
                "text": "Your code: 771234",
                "headers": {"X-Mail-Type": "signup"},
                "type": "signup",
                "message_id": "<signup-1@example.test>",
                "date": "Sat, 05 Dec 2026 01:00:00 +0000",
            }
        }

    async def run(self) -> None:
        raise RuntimeError("550 5.1.1 mailbox unavailable")


def operator(request: Request) -> str | None:
    return request.cookies.get("operator")


def create_app() -> Starlette:
    registry = TaskRegistry()
    registry.register("report.build", lambda type, payload: Flaky(str(payload["name"])))
    registry.register_prefix("mailer.", lambda type, payload: RefusedMail("x@example.test"))
    outbox = Outbox(open_store(f"sqlite:///{os.environ['APITASK_DASHBOARD_DB']}"), registry)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with outbox:
            await outbox.migrate()
            yield

    async def work() -> None:
        worker = outbox.worker(listen=False, backoff=Backoff(max_attempts=1))
        await worker.run(until_empty=True)

    async def seed(request: Request) -> JSONResponse:
        ids = [
            await outbox.enqueue(None, Flaky("monthly")),
            await outbox.enqueue(None, RefusedMail("ann@acme.example")),
        ]
        ids += [await outbox.enqueue(None, Flaky(f"later-{n}"), delay=3600) for n in range(3)]
        await work()
        return JSONResponse(ids)

    async def fix(request: Request) -> JSONResponse:
        Flaky.broken = False
        return JSONResponse(True)

    async def run_due(request: Request) -> JSONResponse:
        await work()
        return JSONResponse((await outbox.stats()).total(JobState.SUCCEEDED))

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/_test/seed", seed, methods=["POST"]),
            Route("/_test/fix", fix, methods=["POST"]),
            Route("/_test/work", run_due, methods=["POST"]),
            # refresh=0: every poll is a point of the chart (a screenshot shows one).
            Mount("/ops/apitask", dashboard.app(outbox, auth=operator, refresh=0)),
        ],
    )

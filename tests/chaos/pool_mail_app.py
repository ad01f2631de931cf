"""Scenario 3's app: mail handed to a WorkerPool that spills into an outbox at shutdown.

Run by uvicorn as ``chaos.pool_mail_app:app`` (``--fd``: the test binds the
socket). The lifespan opens a SQLite outbox (``$CHAOS_OUTBOX_URL``) with a
worker, and a ``WorkerPool`` of 16 workers whose drain lasts
``$CHAOS_SHUTDOWN_TIMEOUT`` seconds and whose leftovers spill into the outbox.
Mail goes to the chaos mail server through one ``SMTPClient``.

* ``POST /mails?start=S&n=N`` submits N confirmation mails (to
  ``user-<i>@example.org``) and answers their Message-IDs at once;
* ``GET /stats`` answers the pool's queue depth.

It prints ``ready`` once started and, at shutdown, one line with the drain's
report: ``drained timed_out=... spilled=... abandoned=... cancelled=...``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import apitask
from apitask.mail import MailTask
from apitask.outbox import TaskRegistry, open_outbox

from .chaos_tasks import confirmation, smtp_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

smtp = smtp_client()
registry = TaskRegistry()
registry.register_prefix("mailer.", MailTask.factory(smtp))
outbox = open_outbox(os.environ["CHAOS_OUTBOX_URL"], registry)
pool = apitask.WorkerPool(
    workers=16,
    shutdown_timeout=float(os.environ["CHAOS_SHUTDOWN_TIMEOUT"]),
    spill=outbox.sink,
    spill_timeout=60,  # one SQLite transaction per spilled task: give 2,000 room
)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def mails(request: Request) -> JSONResponse:
    start, n = int(request.query_params["start"]), int(request.query_params["n"])
    ids = []
    for i in range(start, start + n):
        message = confirmation(f"user-{i}@example.org")
        await pool.submit(MailTask(message, smtp))
        ids.append(message.message_id)
    return JSONResponse({"message_ids": ids})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse({"queued": pool.queue_depth, "running": pool.running})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with outbox:
        await outbox.migrate()
        # Leaving the block stops the outbox worker first, then closes the pool
        # (drain, then spill into the outbox): a stopping process claims no
        # spilled job, the next start delivers them.
        async with pool, outbox.worker(concurrency=16, poll_interval=0.2):
            say("ready")
            yield
        report = pool.report
        assert report is not None
        cancelled = sum(
            1 for left in report.leftovers if left.state.value in ("cancelled", "stuck")
        )
        say(
            f"drained timed_out={report.timed_out} spilled={len(report.spilled)} "
            f"abandoned={len(report.abandoned)} cancelled={cancelled}"
        )
    await smtp.aclose()


app = Starlette(
    routes=[Route("/mails", mails, methods=["POST"]), Route("/stats", stats)],
    lifespan=lifespan,
)

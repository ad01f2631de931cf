"""A Starlette app whose lifespan runs a WorkerPool (started by test_pool_uvicorn.py).

POST /enqueue?n=N submits N slow tasks; each appends a line to $POOL_APP_OUT
when done. GET /stats tells how many are queued and running.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import apitask

if TYPE_CHECKING:
    from starlette.requests import Request

OUT = Path(os.environ["POOL_APP_OUT"])
TASK_SECONDS = float(os.environ.get("POOL_APP_TASK_SECONDS", "0.2"))

pool = apitask.WorkerPool(workers=2, shutdown_timeout=60)


def slow_write(i: int) -> None:
    """Slow I/O standing in for an SMTP send: runs on the pool's threads."""
    time.sleep(TASK_SECONDS)
    with OUT.open("a") as out:
        out.write(f"done {i}\n")


async def enqueue(request: Request) -> JSONResponse:
    n = int(request.query_params["n"])
    for i in range(n):
        await pool.submit(apitask.task("test.slow_write", slow_write, i))
    return JSONResponse({"submitted": n})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse({"queued": pool.queue_depth, "running": pool.running})


app = Starlette(
    routes=[Route("/enqueue", enqueue, methods=["POST"]), Route("/stats", stats)],
    lifespan=pool.lifespan,
)

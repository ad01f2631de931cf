"""CPU µs per request of TaskMiddleware with one task, in process, against the floors.

``bench/middleware.py`` measures the same apps through uvicorn and wrk, where
the other load on the shared machine moves the figures by more than the
middleware's own cost. This drives the apps directly (no server, no sockets:
32 concurrent callers on uvloop, the process's CPU time), so a change of a
fraction of a µs per request shows. Cases, in rounds:

* ``floor``: TaskMiddleware, the handler awaits one bare ``create_task``;
* ``floor before`` / ``floor after``: TaskMiddleware around a bare task
  awaited where the wait mode waits (``middleware.BareWait``);
* ``before`` / ``after``: one no-op ``apitask.run`` task, the wait mode.

With ``--against DIR`` (a directory holding an older ``apitask`` package,
e.g. ``git archive REV src/apitask | tar -x -C DIR --strip-components=1``)
the cases also run on that copy, in the same rounds, and the table prints
each case's cost with both copies.

    .venv/bin/python bench/request_cost.py [--rounds 7] [--requests 32000] [--against DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvloop
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import apitask
import apitask.asgi
from _common import GET_SCOPE, load_copy, load_text
from middleware import BareWait, hello_starting_bare_task, hello_with_bare_task, noop

if TYPE_CHECKING:
    from types import ModuleType

    from starlette.requests import Request
    from starlette.types import ASGIApp, Message

SCOPE = GET_SCOPE


def apps(lib: ModuleType) -> dict[str, ASGIApp]:
    """The five cases, built on the library ``lib`` (apitask or a copy)."""
    middleware = importlib.import_module(f"{lib.__name__}.asgi").TaskMiddleware

    async def one_task(request: Request) -> PlainTextResponse:
        await lib.run(lib.task("bench.noop", noop))
        return PlainTextResponse("Hello, world!")

    def app(endpoint: Any) -> Starlette:
        return Starlette(routes=[Route("/", endpoint)])

    return {
        "floor": middleware(app(hello_with_bare_task)),
        # The mode floors as in bench/middleware.py: the scope without a send wrapper.
        "floor before": middleware(
            BareWait(app(hello_starting_bare_task), "before, start held"), wait="after_response"
        ),
        "before": middleware(app(one_task)),
        "floor after": middleware(
            BareWait(app(hello_starting_bare_task), "after"), wait="after_response"
        ),
        "after": middleware(app(one_task), wait="after_response"),
    }


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Message) -> None:
    return None


async def cpu_us_per_request(app: ASGIApp, requests: int, callers: int = 32) -> float:
    async def caller(n: int) -> None:
        for _ in range(n):
            await app(dict(SCOPE), receive, send)

    start = time.process_time()
    await asyncio.gather(*(caller(requests // callers) for _ in range(callers)))
    return (time.process_time() - start) / requests * 1e6


async def run(args: argparse.Namespace) -> None:
    copies = {"now": apps(apitask)}
    if args.against:
        copies["before"] = apps(load_copy(Path(args.against)))
    for cases in copies.values():  # warm-up: imports, caches
        for app in cases.values():
            await cpu_us_per_request(app, 3200)
    results: dict[tuple[str, str], list[float]] = {
        (copy, case): [] for copy, cases in copies.items() for case in cases
    }
    for _ in range(args.rounds):
        for copy, cases in copies.items():
            for case, app in cases.items():
                results[copy, case].append(await cpu_us_per_request(app, args.requests))
    print(f"CPU µs per request, {args.requests} requests x {args.rounds} rounds per case")
    print(f"{'copy':<7} {'case':<13} {'median':>7} {'x floor [range], round by round':>34}")
    for (copy, case), values in results.items():
        floor = results[copy, "floor"]
        ratios = [v / f for v, f in zip(values, floor, strict=True)]
        print(
            f"{copy:<7} {case:<13} {statistics.median(values):7.2f}"
            f"  {statistics.median(ratios):.3f}x [{min(ratios):.2f}..{max(ratios):.2f}]"
        )
    if "before" in copies:
        print("now - before, µs per request, round by round:")
        for case in copies["now"]:
            diffs = [
                a - b for a, b in zip(results["now", case], results["before", case], strict=True)
            ]
            median, low, high = statistics.median(diffs), min(diffs), max(diffs)
            print(f"  {case:<13} {median:+.2f} [{low:+.2f}..{high:+.2f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=32000)
    parser.add_argument("--against", help="a directory holding an older apitask package")
    args = parser.parse_args()
    load_before = load_text()
    uvloop.run(run(args))
    print(f"load average before {load_before}, after {load_text()}")


if __name__ == "__main__":
    main()

"""What ``RequestScope.settle()`` saves the ASGI middleware, per request, in process.

The middleware ends each request with ``settle()``, which hands back a bare
future to await (or nothing, with no task pending) instead of ``wait()``'s
coroutine and its ``WaitReport``. This bench drives a Starlette app through
``TaskMiddleware`` directly (no server, no sockets: only the code under test
runs) and reads the process's CPU time per request for three cases, in
alternating rounds:

* ``with``: the library as it is, one no-op ``apitask.run`` task per request;
* ``without``: the same, ``settle`` replaced by its older form (``wait()``'s
  coroutine when tasks are pending, else close the scope);
* ``floor``: the same middleware, the handler starting one bare
  ``create_task`` instead (what any concurrent task costs).

It prints CPU µs per request and each case's ratio to the floor, round by
round, for both wait modes, and saves bench/results/settle.json.

    .venv/bin/python bench/settle.py [--requests 16000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import TYPE_CHECKING, Any, Literal

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import apitask
from _common import GET_SCOPE, RESULTS, load_text
from apitask._scope import RequestScope
from apitask.asgi import TaskMiddleware

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

SETTLE = RequestScope.settle
CASES = ("with", "without", "floor")
Wait = Literal["before_response", "after_response"]
WAITS: tuple[Wait, ...] = ("before_response", "after_response")
_background: set[asyncio.Task[None]] = set()


def _settle_before(self: RequestScope, timeout: float | None = None) -> Awaitable[object] | None:
    """``settle`` as the middleware did it before issue 19: ``wait()``'s coroutine."""
    if self._tasks:
        return self.wait(timeout)
    self.close()
    return None


async def _noop() -> None:
    return None


async def _ours(request: Request) -> Response:
    await apitask.run(apitask.task("noop", _noop))
    return PlainTextResponse("hi")


async def _floor(request: Request) -> Response:
    task = asyncio.get_running_loop().create_task(_noop())
    _background.add(task)
    task.add_done_callback(_background.discard)
    return PlainTextResponse("hi")


def _app(case: str, wait: Wait) -> Any:
    endpoint = _floor if case == "floor" else _ours
    return TaskMiddleware(Starlette(routes=[Route("/", endpoint)]), wait=wait)


async def _cpu_us_per_request(app: Callable[..., Awaitable[None]], requests: int) -> float:
    scope = dict(GET_SCOPE)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    for _ in range(200):  # warm-up: imports, caches
        await app(scope, receive, send)
    start = time.process_time()
    for _ in range(requests):
        await app(scope, receive, send)
    return (time.process_time() - start) / requests * 1e6


def _measure(case: str, wait: Wait, requests: int) -> float:
    RequestScope.settle = SETTLE if case != "without" else _settle_before  # type: ignore[method-assign]
    try:
        return asyncio.run(_cpu_us_per_request(_app(case, wait), requests))
    finally:
        RequestScope.settle = SETTLE  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {"requests": args.requests, "load_before": load_text()}
    for wait in WAITS:
        rows: dict[str, list[float]] = {case: [] for case in CASES}
        for _ in range(args.rounds):
            for case in CASES:
                rows[case].append(_measure(case, wait, args.requests))
        ratios = {
            case: [ours / floor for ours, floor in zip(rows[case], rows["floor"], strict=True)]
            for case in ("with", "without")
        }
        results[wait] = {"cpu_us": rows, "ratio_to_floor": ratios}
        print(f"{wait}: CPU µs per request, round by round")
        for case in CASES:
            print(f"  {case:<8} " + "  ".join(f"{v:6.1f}" for v in rows[case]))
        for case, values in ratios.items():
            print(
                f"  {case} ÷ floor: median {statistics.median(values):.2f}x "
                f"[{min(values):.2f}-{max(values):.2f}]"
            )
    results["load_after"] = load_text()
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "settle.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

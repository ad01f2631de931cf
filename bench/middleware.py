"""Requests/s of a hello-world Starlette app on uvicorn, with and without TaskMiddleware.

Each case is its own uvicorn process (uvloop + httptools, one worker, access
log off) on 127.0.0.1; wrk loads them in turn, interleaved and repeated, and
the table prints medians with the ratio to the plain app, then the ratios
of issue 19 (P8): TaskMiddleware running one no-op task against the floor
(TaskMiddleware + one bare ``create_task`` awaited in the handler, what any
concurrent task costs), against the floor of its wait mode ("mode": a bare
task awaited where that mode waits, before the message that ends the
response, the start held back to go out with it, or after the app
returned, by a bench-only ASGI wrapper) and against the peer (Starlette's
own ``BackgroundTask``). The floors of the modes are also printed against
the floor, with one more: the start sent at once, one loop iteration before
the end (what ``before_response`` did before it held the start). Each ratio is
taken round by round (the cases of one round ran back to back), and its
median and range over the rounds are printed. Targets: requests/s at least
0.95x the floor's with ``after_response`` and 0.9x with ``before_response``;
server CPU per request at most 1.1x the floor's in both.

    .venv/bin/python bench/middleware.py [--seconds 3] [--repeat 5] [--connections 32]

wrk comes from Debian (``apt-get install wrk``); the script installs it when
it runs as root and wrk is missing. This file is also the served app module
(uvicorn imports ``middleware:<case>`` from bench/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import apitask
from _common import Series, save, table
from apitask.asgi import TaskMiddleware

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.requests import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

HERE = Path(__file__).resolve().parent


async def noop() -> None:
    return None


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


async def hello_with_bare_task(request: Request) -> PlainTextResponse:
    # What any asyncio task costs here: start one, wait for it.
    await asyncio.get_running_loop().create_task(noop())
    return PlainTextResponse("Hello, world!")


async def hello_with_starlette_task(request: Request) -> PlainTextResponse:
    # The peer: Starlette's own BackgroundTask, run after the response is sent.
    return PlainTextResponse("Hello, world!", background=BackgroundTask(noop))


async def hello_with_task(request: Request) -> PlainTextResponse:
    await apitask.run(apitask.task("bench.noop", noop))
    return PlainTextResponse("Hello, world!")


# The bare tasks a request started, for BareWait to await (the floors of the
# two wait modes: the same waits as TaskMiddleware's, without apitask).
_started: contextvars.ContextVar[list[asyncio.Task[None]]] = contextvars.ContextVar("started")


async def hello_starting_bare_task(request: Request) -> PlainTextResponse:
    _started.get().append(asyncio.get_running_loop().create_task(noop()))
    return PlainTextResponse("Hello, world!")


class BareWait:
    """Await the request's bare tasks where a wait mode of TaskMiddleware waits.

    ``"before"``: before the message that ends the response, the start
    sent at once (what early headers cost); ``"before, start held"``: the
    same, holding the start too, so both go out together as in the floor
    (``before_response``'s wait); ``"after"``: once the app returned. Plain
    bodies only: a bench fixture.
    """

    def __init__(self, app: ASGIApp, mode: str) -> None:
        self.app = app
        self.mode = mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started: list[asyncio.Task[None]] = []
        token = _started.set(started)
        held: list[Message] = []

        async def send_after_tasks(message: Message) -> None:
            if message["type"] == "http.response.start" and self.mode == "before, start held":
                held.append(message)
                return
            if message["type"] == "http.response.body" and not message.get("more_body"):
                while started:
                    await started.pop()
                for start in held:
                    await send(start)
            await send(message)

        try:
            if self.mode == "after":
                await self.app(scope, receive, send)
                while started:
                    await started.pop()
            else:
                await self.app(scope, receive, send_after_tasks)
        finally:
            _started.reset(token)


def build(endpoint: object, *middleware: Middleware) -> Starlette:
    return Starlette(routes=[Route("/", endpoint)], middleware=list(middleware))  # type: ignore[arg-type]


# The served apps, one per case (uvicorn bench/middleware:<name>).
plain = build(hello)
bare_task = build(hello_with_bare_task)
starlette_task = build(hello_with_starlette_task)
middleware_only = build(hello, Middleware(TaskMiddleware))
# The floor for "a request scope and one task": the middleware's own cost
# plus one asyncio task's loop round trip, without apitask's task bookkeeping.
middleware_bare_task = build(hello_with_bare_task, Middleware(TaskMiddleware))
one_task = build(hello_with_task, Middleware(TaskMiddleware))
one_task_after = build(hello_with_task, Middleware(TaskMiddleware, wait="after_response"))
# The floors of the wait modes: a bare task awaited where the mode waits, not
# in the handler, inside TaskMiddleware's scope (no task of its own). The
# middleware runs in after_response mode there, which wraps no send: in
# before_response mode its own holding of the start would hide the first
# floor's early start, and each floor would carry one send wrapper more than
# the case it is the floor of.
bare_before = TaskMiddleware(
    BareWait(build(hello_starting_bare_task), "before"), wait="after_response"
)
bare_before_held = TaskMiddleware(
    BareWait(build(hello_starting_bare_task), "before, start held"), wait="after_response"
)
bare_after = TaskMiddleware(
    BareWait(build(hello_starting_bare_task), "after"), wait="after_response"
)

CASES = {
    "plain Starlette (baseline)": "plain",
    "bare asyncio task per request (reference)": "bare_task",
    "Starlette BackgroundTask, no-op (peer)": "starlette_task",
    "+ TaskMiddleware, no task": "middleware_only",
    "+ TaskMiddleware, bare asyncio task (floor)": "middleware_bare_task",
    "+ TaskMiddleware, 1 no-op task (before_response)": "one_task",
    "+ TaskMiddleware, 1 no-op task (after_response)": "one_task_after",
    "+ TaskMiddleware, bare task awaited before the end": "bare_before",
    "+ TaskMiddleware, bare task, start held to the end": "bare_before_held",
    "+ TaskMiddleware, bare task awaited after the app": "bare_after",
}


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
        wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("bench/middleware.py needs wrk: apt-get install wrk")
    return wrk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"uvicorn exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)  # polling for readiness
    sys.exit("uvicorn did not start listening within 30 s")


@contextlib.contextmanager
def uvicorn(app_name: str) -> Iterator[tuple[str, int]]:
    """Serve ``middleware:<app_name>``; yield its URL and process id."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "--app-dir", str(HERE),
            "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
            f"middleware:{app_name}",
        ]
    )  # fmt: skip
    try:
        wait_until_listening(port, process)
        yield f"http://127.0.0.1:{port}/", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(wrk: str, url: str, pid: int, seconds: int, connections: int) -> tuple[float, float]:
    """Requests/s that wrk measured, and the server's CPU µs per request."""
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        [wrk, "-t", "1", "-c", str(connections), "-d", f"{seconds}s", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu_before
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if rate is None or count is None or "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"wrk run failed or saw errors:\n{out}")
    return float(rate.group(1)), cpu / int(count.group(1)) * 1e6


FLOOR = "+ TaskMiddleware, bare asyncio task (floor)"
PEER = "Starlette BackgroundTask, no-op (peer)"
# (case, requests/s target vs the floor, CPU/request target vs the floor,
# the floor of its wait mode: a bare task awaited where that mode waits)
TARGETS = {
    "+ TaskMiddleware, 1 no-op task (before_response)": (
        0.9,
        1.1,
        # before_response holds the start until the end of a one-message body
        "+ TaskMiddleware, bare task, start held to the end",
    ),
    "+ TaskMiddleware, 1 no-op task (after_response)": (
        0.95,
        1.1,
        "+ TaskMiddleware, bare task awaited after the app",
    ),
}
# What the floor of each wait mode costs against the floor (no apitask in them).
COMPOSITION = (
    "+ TaskMiddleware, bare task awaited before the end",
    "+ TaskMiddleware, bare task, start held to the end",
    "+ TaskMiddleware, bare task awaited after the app",
)


def paired(ours: Series, reference: Series) -> tuple[float, float, float]:
    """Median, min and max over the rounds of ours / reference, round by round."""
    ratios = [a / b for a, b in zip(ours.values, reference.values, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def verdicts(rates: dict[str, Series], costs: dict[str, Series]) -> list[str]:
    """The lines of issue 19's ratio table, each with its target and whether it is met."""
    lines = [f"{'case':<50} {'vs':<6} {'req/s ratio [range]':>24} {'CPU ratio [range]':>24}"]

    def ratio_line(name: str, label: str, reference: str) -> str:
        rate, rate_lo, rate_hi = paired(rates[name], rates[reference])
        cpu, cpu_lo, cpu_hi = paired(costs[name], costs[reference])
        return (
            f"{name:<50} {label:<6} {rate:>8.3f}x [{rate_lo:.2f}..{rate_hi:.2f}]"
            f" {cpu:>12.3f}x [{cpu_lo:.2f}..{cpu_hi:.2f}]"
        )

    for name, (rate_target, cpu_target, mode_floor) in TARGETS.items():
        rate, cpu = paired(rates[name], rates[FLOOR])[0], paired(costs[name], costs[FLOOR])[0]
        met = rate >= rate_target and cpu <= cpu_target
        lines.append(
            ratio_line(name, "floor", FLOOR)
            + f"  target >={rate_target}x, <={cpu_target}x: {'met' if met else 'MISSED'}"
        )
        lines.append(ratio_line(name, "mode", mode_floor))
        lines.append(ratio_line(name, "peer", PEER))
    lines.append("the floors of the wait modes (no apitask) against the floor:")
    lines.extend(ratio_line(name, "floor", FLOOR) for name in COMPOSITION)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    wrk = ensure_wrk()
    load_before = os.getloadavg()
    rates = {name: Series(name, "/s") for name in CASES}
    costs = {name: Series(name, "us") for name in CASES}
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(uvicorn(app)) for name, app in CASES.items()}
        for url, pid in servers.values():  # warm-up
            load(wrk, url, pid, 1, args.connections)
        for _ in range(args.repeat):
            for name, (url, pid) in servers.items():  # interleaved: drift hits all alike
                rate, cost = load(wrk, url, pid, args.seconds, args.connections)
                rates[name].values.append(rate)
                costs[name].values.append(cost)
    print(
        f"hello-world Starlette on uvicorn (uvloop, httptools), wrk -t1 -c{args.connections}, "
        f"{args.seconds} s x {args.repeat} per case"
    )
    print("requests/s:")
    print(table(list(rates.values()), rates["plain Starlette (baseline)"], higher_is_better=True))
    # The machine is shared: the server's own CPU time per request is the
    # steadier measure of what the middleware costs.
    print("server CPU µs per request:")
    print(table(list(costs.values()), costs["plain Starlette (baseline)"]))
    print("issue 19 (P8): ours against the floor and the peer, ratios round by round")
    print("\n".join(verdicts(rates, costs)))
    load_after = os.getloadavg()
    print(f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    rows = [*rates.values(), *costs.values()]
    path = save(
        "middleware",
        rows,
        seconds=args.seconds,
        connections=args.connections,
        load_before=load_before,
        load_after=load_after,
    )
    print(f"raw: {path}")


if __name__ == "__main__":
    main()

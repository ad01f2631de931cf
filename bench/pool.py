"""WorkerPool cost: submit -> run per task, memory of a full queue, worker count.

Run: ``.venv/bin/python bench/pool.py`` (about 30 s). Three parts:

1. Per-task cost of submit -> run for 100,000 no-op tasks, against a bare
   ``asyncio.Queue`` with the same number of consumer tasks, and against
   ``create_task`` per task (with the strong-reference set every real use
   needs). Targets: at most 3x the bare queue, cheaper than create_task.
2. RSS growth with 100,000 no-op tasks queued (each case in a fresh process).
   Target: under 100 MB.
3. Throughput of I/O-bound tasks (10 ms each) by workers per CPU, and the
   no-op cost at those worker counts: what the default per_cpu rests on.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import apitask
from _common import Series, save, table
from apitask import FunctionTask, WorkerPool

N = 100_000
REPEAT = 7


class Countdown:
    """The no-op task body: counts down and sets ``done`` at zero (same in every case)."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.done = asyncio.Event()

    async def __call__(self) -> None:
        self.left -= 1
        if not self.left:
            self.done.set()


def noop_tasks(countdown: Countdown, n: int = N) -> list[FunctionTask[[]]]:
    return [apitask.task("bench.noop", countdown) for _ in range(n)]


async def bare_queue(workers: int) -> float:
    """Seconds for N tasks through asyncio.Queue(maxsize=N) and ``workers`` consumers."""
    countdown = Countdown(N)
    tasks = noop_tasks(countdown)
    queue: asyncio.Queue[FunctionTask[[]]] = asyncio.Queue(N)

    async def consume() -> None:
        while True:
            task = await queue.get()
            await task.run()

    consumers = [asyncio.create_task(consume()) for _ in range(workers)]
    start = time.perf_counter()
    for task in tasks:
        await queue.put(task)
    await countdown.done.wait()
    elapsed = time.perf_counter() - start
    for consumer in consumers:
        consumer.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    return elapsed


async def create_task_each(workers: int) -> float:
    """Seconds for N tasks, one asyncio.Task each, kept in a set until done."""
    countdown = Countdown(N)
    tasks = noop_tasks(countdown)
    running: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    for task in tasks:
        spawned = asyncio.create_task(task.run())
        running.add(spawned)
        spawned.add_done_callback(running.discard)
    await countdown.done.wait()
    return time.perf_counter() - start


async def worker_pool(workers: int) -> float:
    """Seconds for N tasks submitted to a WorkerPool with ``workers`` workers."""
    countdown = Countdown(N)
    tasks = noop_tasks(countdown)
    async with WorkerPool(workers=workers, queue_size=N) as pool:
        start = time.perf_counter()
        for task in tasks:
            await pool.submit(task)
        await countdown.done.wait()
        return time.perf_counter() - start


def per_task_cost(workers: int) -> list[Series]:
    cases = {
        f"asyncio.Queue + {workers} consumers": bare_queue,
        "create_task per task (+ref set)": create_task_each,
        f"WorkerPool(workers={workers})": worker_pool,
    }
    rows = [Series(name, "us") for name in cases]
    for _ in range(REPEAT):
        for row, case in zip(rows, cases.values(), strict=True):
            gc.collect()
            row.values.append(asyncio.run(case(workers)) / N * 1e6)
    return rows


# ------------------------------------------------------------------ memory


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def queued_rss(kind: str) -> float:
    """MiB of RSS growth for N no-op tasks created and queued (not run)."""
    gc.collect()
    before = rss_kib()
    countdown = Countdown(N)
    if kind == "tasks":
        kept = noop_tasks(countdown)
        grown = (rss_kib() - before) / 1024
        assert len(kept) == N
        return grown
    if kind == "queue":
        queue: asyncio.Queue[FunctionTask[[]]] = asyncio.Queue()
        for task in noop_tasks(countdown):
            queue.put_nowait(task)
        return (rss_kib() - before) / 1024
    release = asyncio.Event()

    async def block() -> None:
        await release.wait()

    pool = WorkerPool(workers=1, queue_size=N)
    await pool.start()
    await pool.submit(apitask.task("bench.block", block))  # holds the worker
    for task in noop_tasks(countdown):
        await pool.submit(task)
    assert pool.queue_depth == N
    grown = (rss_kib() - before) / 1024
    release.set()
    await pool.aclose()
    return grown


def rss_in_child(kind: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--rss", kind], check=True, capture_output=True, text=True
    ).stdout
    return float(json.loads(out))


def memory() -> list[Series]:
    labels = {
        "tasks": "100k FunctionTask objects alone",
        "queue": "... in a bare asyncio.Queue",
        "pool": "... queued in a WorkerPool",
    }
    rows = [Series(label, "MB") for label in labels.values()]
    for _ in range(3):
        for row, kind in zip(rows, labels, strict=True):
            row.values.append(rss_in_child(kind))
    return rows


# ------------------------------------------------------------------ worker count


async def io_throughput(workers: int, latency: float = 0.010, n: int = 2_000) -> float:
    """Tasks per second when each task waits ``latency`` seconds (an SMTP round trip)."""
    countdown = Countdown(n)

    async def io_task() -> None:
        await asyncio.sleep(latency)
        await countdown()

    async with WorkerPool(workers=workers, queue_size=n) as pool:
        start = time.perf_counter()
        for _ in range(n):
            await pool.submit(apitask.task("bench.io", io_task))
        await countdown.done.wait()
        return n / (time.perf_counter() - start)


def worker_counts() -> list[tuple[int, int, float, float]]:
    cpus = os.cpu_count() or 1
    rows = []
    for per_cpu in (1, 2, 4, 8, 16, 32, 64):
        workers = cpus * per_cpu
        rate = max(asyncio.run(io_throughput(workers)) for _ in range(2))
        cost = min(asyncio.run(worker_pool(workers)) for _ in range(2)) / N * 1e6
        rows.append((per_cpu, workers, rate, cost))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rss", choices=("tasks", "queue", "pool"), help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) * 8)
    args = parser.parse_args()
    if args.rss:
        print(json.dumps(asyncio.run(queued_rss(args.rss))))
        return

    print(f"1. submit -> run, {N:,} no-op tasks, {REPEAT} runs, workers={args.workers}")
    cost = per_task_cost(args.workers)
    print(table(cost, cost[0]))
    print()
    print(f"2. RSS growth with {N:,} queued no-op tasks (fresh process each, 3 runs)")
    rss = memory()
    print(table(rss, rss[0]))
    print()
    print("3. workers per CPU: I/O-bound throughput (10 ms tasks) and no-op cost")
    print(f"{'per_cpu':>8} {'workers':>8} {'tasks/s':>10} {'us/task':>9}")
    counts = worker_counts()
    for per_cpu, workers, rate, us in counts:
        print(f"{per_cpu:>8} {workers:>8} {rate:>10.0f} {us:>9.2f}")
    path = save(
        "pool",
        cost + rss,
        worker_counts=[
            {"per_cpu": p, "workers": w, "io_tasks_per_s": r, "noop_us": c} for p, w, r, c in counts
        ],
    )
    print(f"\nraw: {path}")


if __name__ == "__main__":
    main()

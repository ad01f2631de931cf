"""What the job history (outbox migration 5) costs a worker: before/after, interleaved.

Two long-lived child processes, one per source tree: the baseline (before the
history) and the candidate (with it), each importing its own ``apitask``. The
driver asks them in turn, A B B A A B ..., to run one batch of a case, so the
load other work puts on this (shared, 2-core) machine falls on both alike,
and prints for each case the per-pair ratio baseline time / candidate time
(1.00x: no cost; below 1: the candidate is slower), its median and range, and
the load average.

Cases (N no-op jobs enqueued first, untimed; then one worker, concurrency 10,
runs them all, timed; the table is emptied after each batch, untimed):

  success       every job succeeds; kept for retention (the default)
  success, r=0  every job succeeds; retention=0 deletes each row (and, with the
                history, its events: a cascade on PostgreSQL, one more DELETE
                per write-back on SQLite)
  fail once     every job fails once (TransientError, due again at once), then
                succeeds: N failed attempts, each now writing an event

on SQLite (a file, synchronous=NORMAL) and PostgreSQL (a schema of its own).

The trees are exported with ``git archive``, so this work tree is untouched::

    git archive <base> src | tar -x -C /tmp/base
    git archive HEAD src | tar -x -C /tmp/head
    .venv/bin/python bench/history_cost.py /tmp/base /tmp/head --pairs 10 -n 300 --save
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from _common import RESULTS, load_average

if TYPE_CHECKING:
    from collections.abc import Mapping

CASES = ("success", "success, r=0", "fail once")
BACKENDS = ("sqlite", "pg")


# -- the child: one source tree's outbox -------------------------------------------


class Job:
    """A no-op durable task; with ``fail`` set, its first attempt fails (transiently)."""

    failed: set[str] = set()  # noqa: RUF012 - shared: the tasks rebuilt by the worker

    def __init__(self, name: str, fail: bool) -> None:
        self.type = "bench.job"
        self.name = name
        self.fail = fail

    def payload(self) -> Mapping[str, Any]:
        return {"name": self.name, "fail": self.fail}

    async def run(self) -> None:
        from apitask import TransientError

        if self.fail and self.name not in Job.failed:
            Job.failed.add(self.name)
            raise TransientError("first attempt fails", retry_after=0.0)


async def child(pg: str) -> None:
    """Serve batches: read "backend<TAB>case<TAB>n" lines, answer seconds per batch."""
    import asyncpg

    from apitask.outbox import JobState, Outbox, TaskRegistry, open_outbox
    from apitask.outbox.postgres import PostgresStore

    logging.getLogger("apitask").setLevel(logging.ERROR)  # a line per failed attempt otherwise
    registry = TaskRegistry()
    registry.register("bench.job", lambda type, p: Job(str(p["name"]), bool(p["fail"])))
    folder = tempfile.mkdtemp(prefix="history-cost-")
    schema = f"history_cost_{os.getpid()}"
    outboxes = {
        "sqlite": open_outbox(f"sqlite:///{folder}/outbox.db", registry, synchronous="NORMAL"),
        "pg": Outbox(PostgresStore(pg, schema=schema), registry),
    }
    for outbox in outboxes.values():
        await outbox.migrate()
    loop = asyncio.get_running_loop()
    batch = 0
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            backend, case, n = line.rstrip("\n").split("\t")
            outbox = outboxes[backend]
            batch += 1
            fail = case == "fail once"
            await asyncio.gather(
                *(outbox.enqueue(None, Job(f"{batch}-{i}", fail)) for i in range(int(n)))
            )
            worker = outbox.worker(
                concurrency=10,
                listen=False,
                poll_interval=0.005,
                retention=0.0 if case == "success, r=0" else 86_400.0,
            )
            started = time.perf_counter()
            await worker.run(until_empty=True)
            elapsed = time.perf_counter() - started
            await outbox.purge(JobState.SUCCEEDED)
            print(elapsed, flush=True)
    finally:
        for outbox in outboxes.values():
            await outbox.aclose()
        admin = await asyncpg.connect(pg)
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


# -- the driver ---------------------------------------------------------------------


class Side:
    """A child process running one tree's code."""

    def __init__(self, tree: Path, pg: str) -> None:
        env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{Path(__file__).parent}"}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child", "--pg", pg],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, backend: str, case: str, n: int) -> float:
        stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        stdin.write(f"{backend}\t{case}\t{n}\n")
        stdin.flush()
        return float(stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()  # type: ignore[union-attr]
        self.process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path, nargs="?", help="source tree before the history")
    parser.add_argument("candidate", type=Path, nargs="?", help="source tree with it")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.pg))
        return
    sides = {"baseline": Side(args.baseline, args.pg), "candidate": Side(args.candidate, args.pg)}
    times: dict[str, dict[str, list[float]]] = {}
    loads = [load_average()[0]]
    try:
        for backend in BACKENDS:
            for case in CASES:
                name = f"{backend} {case}"
                times[name] = {"baseline": [], "candidate": []}
                for side in sides.values():  # one untimed warm-up batch each
                    side.run(backend, case, args.n)
                for pair in range(args.pairs):
                    order = (
                        ["baseline", "candidate"] if pair % 2 == 0 else ["candidate", "baseline"]
                    )
                    for which in order:
                        times[name][which].append(sides[which].run(backend, case, args.n))
                loads.append(load_average()[0])
                print(f"{name}: done, load {load_average()}", flush=True)
    finally:
        for side in sides.values():
            side.close()
    print(f"\nratio = baseline time / candidate time per pair (1.00x: no cost), n={args.n}")
    summary = {}
    for name, pair_times in times.items():
        ratios = [
            b / c for b, c in zip(pair_times["baseline"], pair_times["candidate"], strict=True)
        ]
        jobs_per_s = args.n / statistics.median(pair_times["candidate"])
        summary[name] = statistics.median(ratios)
        print(
            f"  {name:<22} {statistics.median(ratios):.2f}x"
            f" ({min(ratios):.2f}-{max(ratios):.2f})   candidate {jobs_per_s:,.0f} jobs/s"
        )
    print(f"load average (1 min) during the run: {min(loads):.2f}-{max(loads):.2f}")
    if args.save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / "history_cost.json"
        data = {"n": args.n, "pairs": args.pairs, "loads": loads, "times": times}
        path.write_text(json.dumps(data | {"median_ratio": summary}, indent=2))
        print("saved", path)


if __name__ == "__main__":
    main()

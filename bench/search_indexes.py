"""What outbox migration 4 (the dashboard's search indexes) costs the hot path.

    .venv/bin/python bench/search_indexes.py [postgresql://postgres@127.0.0.1:5432/test]
        [--jobs 2000] [--rounds 6]

Each round makes two fresh outboxes, one at schema version 3 and one at
version 4, each already holding 100,000 succeeded jobs with request ids, and
times in each, one after the other (the order alternating between rounds):
``jobs`` enqueues of a job with a request id, one transaction each, then
claiming them 10 at a time and finishing each as succeeded (kept, as with a
retention period). Prints the median of each step per version and the ratio
of version 4 to version 3 in each round (median and range). SQLite (a file,
WAL) always; PostgreSQL when a URL is given (schemas of their own, dropped at
the end).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

import apitask.outbox.postgres as postgres_module
import apitask.outbox.sqlite as sqlite_module
from apitask.outbox import open_store
from apitask.outbox._records import Finish, Verdict
from apitask.outbox._store import NewJob

FILLED = 100_000
FILL = (
    "INSERT INTO apitask_jobs (type, payload, state, attempts, run_at, created_at,"
    " finished_at, request_id) SELECT 'report', '{{}}', 'succeeded', 1, {now}, {now}, {now},"
    " 'old-' || {n}"
)


async def make(url: str, version: int, folder: Path) -> tuple[Any, str]:
    """A fresh store at ``version`` with FILLED succeeded jobs; its URL or schema."""
    postgres = url.startswith("postgres")
    module: Any = postgres_module if postgres else sqlite_module
    known = module._MIGRATIONS
    module._MIGRATIONS = known[:version]
    try:
        if postgres:
            schema = f"apitask_bench_idx_{secrets.token_hex(4)}"
            store: Any = open_store(url, schema=schema)
            await store.migrate()
            conn = await asyncpg.connect(url)
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute(
                FILL.format(now="now()", n="g") + " FROM generate_series(1, $1) AS g", FILLED
            )
            await conn.execute("VACUUM ANALYZE apitask_jobs")
            await conn.close()
            return store, schema
        path = folder / f"v{version}-{secrets.token_hex(4)}.db"
        store = open_store(f"sqlite:///{path}")
        await store.migrate()
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < ?) "
            + FILL.format(now="1.7e9", n="n")
            + " FROM c",
            (FILLED,),
        )
        db.close()
        return store, str(path)
    finally:
        module._MIGRATIONS = known


async def lifecycle(store: Any, jobs: int) -> tuple[float, float]:
    """Seconds to enqueue ``jobs`` jobs, and to claim and finish them."""
    start = time.perf_counter()
    for n in range(jobs):
        await store.insert(None, NewJob("ping", "{}", request_id=f"req-{n}"))
    enqueued = time.perf_counter()
    while batch := await store.claim("bench", 10, 60.0):
        outcomes = [Finish(job.id, Verdict.SUCCEEDED) for job in batch]
        await store.finish("bench", outcomes, keep=True)
    return enqueued - start, time.perf_counter() - enqueued


async def run(url: str, jobs: int, rounds: int, folder: Path) -> None:
    times: dict[int, list[tuple[float, float]]] = {3: [], 4: []}
    for round in range(rounds):
        for version in (3, 4) if round % 2 == 0 else (4, 3):
            store, where = await make(url, version, folder)
            try:
                times[version].append(await lifecycle(store, jobs))
            finally:
                await store.aclose()
                if url.startswith("postgres"):
                    conn = await asyncpg.connect(url)
                    await conn.execute(f'DROP SCHEMA "{where}" CASCADE')
                    await conn.close()
    name = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    for step, label in ((0, "enqueue"), (1, "claim + finish")):
        v3, v4 = (statistics.median(t[step] for t in times[v]) for v in (3, 4))
        # The two outboxes of a round ran back to back: their ratio is the
        # least disturbed by the machine's other load.
        ratios = [b[step] / a[step] for a, b in zip(times[3], times[4], strict=True)]
        print(
            f"{name} {label}: v3 {v3 / jobs * 1e6:.0f} us/job, v4 {v4 / jobs * 1e6:.0f} us/job"
            f" (medians); v4/v3 per round: median {statistics.median(ratios):.3f},"
            f" range {min(ratios):.2f}-{max(ratios):.2f} ({rounds} rounds)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(f"sqlite:///{folder}/x.db", args.jobs, args.rounds, Path(folder)))
    if args.url:
        asyncio.run(run(args.url, args.jobs, args.rounds, Path(".")))


if __name__ == "__main__":
    main()

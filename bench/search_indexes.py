"""What an outbox migration adding indexes (4: the dashboard's searches, 5: its
listing pages) costs the hot path.

    .venv/bin/python bench/search_indexes.py [postgresql://postgres@127.0.0.1:5432/test]
        [--jobs 2000] [--rounds 6] [--versions 3,4]

Each round makes two fresh outboxes, one at the older schema version (3 by
default) and one at the newer (4), each already holding 100,000 succeeded jobs with request ids, and
times in each, one after the other (the order alternating between rounds):
``jobs`` enqueues of a job with a request id, one transaction each, then
claiming them 10 at a time and finishing each as succeeded (kept, as with a
retention period); then the same writes for 50,000 jobs in one statement
each (the rows and index entries alone, no commit per job). Prints the
median of each step per version and the ratio of the newer to the older in
each round (median and range). SQLite (a file, WAL) always; PostgreSQL when
a URL is given (schemas of their own, dropped at the end).
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
        # Written back now, not by a commit being timed.
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
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


# The same row writes, 50,000 at a time in one statement each: what the rows
# and their index entries cost, without a commit per job (whose flush
# dominates the steps above and varies with the machine's other load).
BULK = 50_000
BULK_STEPS = (
    "INSERT INTO apitask_jobs (type, payload, run_at, created_at, request_id)"
    " SELECT 'ping', '{{}}', {now}, {now}, 'bulk-' || {n} FROM {rows}",
    "UPDATE apitask_jobs SET state = 'running', attempts = 1, locked_by = 'b',"
    " locked_until = {now} WHERE state = 'queued'",
    "UPDATE apitask_jobs SET state = 'succeeded', finished_at = {now}, locked_by = NULL,"
    " locked_until = NULL WHERE state = 'running'",
)


async def bulk(url: str, where: str) -> tuple[float, float]:
    """Seconds to insert BULK jobs in one statement, and to claim and finish them so."""
    marks = [time.perf_counter()]
    if url.startswith("postgres"):
        conn = await asyncpg.connect(url)
        await conn.execute(f'SET search_path TO "{where}"')
        rows = f"generate_series(1, {BULK}) AS g"
        for step in BULK_STEPS:
            await conn.execute(step.format(now="now()", n="g", rows=rows))
            marks.append(time.perf_counter())
        await conn.close()
    else:
        db = sqlite3.connect(where, isolation_level=None)
        cte = f"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {BULK}) "
        for index, step in enumerate(BULK_STEPS):
            sql = step.format(now="1.7e9", n="n", rows="c")
            db.execute(cte + sql if index == 0 else sql)
            marks.append(time.perf_counter())
        db.close()
    return marks[1] - marks[0], marks[3] - marks[1]


async def run(url: str, jobs: int, rounds: int, folder: Path, old: int, new: int) -> None:
    times: dict[int, list[tuple[float, ...]]] = {old: [], new: []}
    for round in range(rounds):
        for version in (old, new) if round % 2 == 0 else (new, old):
            store, where = await make(url, version, folder)
            try:
                times[version].append((*await lifecycle(store, jobs), *await bulk(url, where)))
            finally:
                await store.aclose()
                if url.startswith("postgres"):
                    conn = await asyncpg.connect(url)
                    await conn.execute(f'DROP SCHEMA "{where}" CASCADE')
                    await conn.close()
    name = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    steps = [(0, "enqueue", jobs), (1, "claim + finish", jobs)]
    steps += [(2, "bulk insert", BULK), (3, "bulk claim + finish", BULK)]
    for step, label, count in steps:
        a, b = (statistics.median(t[step] for t in times[v]) for v in (old, new))
        # The two outboxes of a round ran back to back: their ratio is the
        # least disturbed by the machine's other load.
        ratios = [y[step] / x[step] for x, y in zip(times[old], times[new], strict=True)]
        print(
            f"{name} {label}: v{old} {a / count * 1e6:.1f} us/job,"
            f" v{new} {b / count * 1e6:.1f} us/job (medians);"
            f" v{new}/v{old} per round: median {statistics.median(ratios):.3f},"
            f" range {min(ratios):.2f}-{max(ratios):.2f} ({rounds} rounds)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--versions", default="3,4", help="the older and the newer version")
    args = parser.parse_args()
    old, new = (int(v) for v in args.versions.split(","))
    with tempfile.TemporaryDirectory() as folder:
        sqlite = f"sqlite:///{folder}/x.db"
        asyncio.run(run(sqlite, args.jobs, args.rounds, Path(folder), old, new))
    if args.url:
        asyncio.run(run(args.url, args.jobs, args.rounds, Path("."), old, new))


if __name__ == "__main__":
    main()

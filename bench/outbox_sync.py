"""enqueue_sync(None, task) on PostgreSQL: reused psycopg connections vs a one-off connection.

Cases, per job, each job committed before the call returns (PostgreSQL, a schema
of its own, dropped at the end), no event loop in the thread:

  one-off    the store's former path, kept for installs without psycopg: a new
             asyncpg connection and an asyncio.run per job (the baseline);
  reused     PostgresStore.insert_sync now: a kept psycopg connection, autocommit;
  caller's   the caller's own psycopg connection, the insert in its transaction
             (BEGIN; INSERT; COMMIT): what a sync app pays with a connection at hand.

Rounds run the three cases back to back (interleaved: the machine is shared);
printed: each case's median ms/job over all rounds, and the per-round ratio
one-off / reused (median and range), with the load average before and after.

Usage: .venv/bin/python bench/outbox_sync.py [--pg URL] [-n 50] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time

import psycopg

from _common import load_text
from apitask.outbox import NewJob
from apitask.outbox._sync_enqueue import insert_sync_in
from apitask.outbox.postgres import PostgresStore


def per_job_ms(insert: object, n: int) -> float:
    """Median milliseconds of one ``insert(job)`` over ``n`` jobs."""
    assert callable(insert)
    times = []
    for i in range(n):
        job = NewJob("bench.note", f'{{"i":{i}}}', None, 0.0, None)
        start = time.perf_counter()
        insert(job)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "APITASK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("-n", type=int, default=50, help="jobs per case per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    schema = f"apitask_bench_sync_{secrets.token_hex(4)}"
    store = PostgresStore(args.pg, schema=schema)

    async def migrate() -> None:
        await store.migrate()
        await store.aclose()  # on the loop that opened the pool

    asyncio.run(migrate())
    caller = psycopg.connect(args.pg)

    def in_callers_transaction(job: NewJob) -> None:
        with caller.transaction():
            insert_sync_in(store, caller, job, allow_autocommit=False)

    cases = {
        "one-off asyncpg connection (before)": store._insert_one_off,
        "reused psycopg connection (now)": store.insert_sync,
        "caller's psycopg connection (reference)": in_callers_transaction,
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    before = load_text()
    try:
        for insert in cases.values():  # warm up: connect, prepare, caches
            per_job_ms(insert, 5)
        for _ in range(args.rounds):
            for name, insert in cases.items():
                results[name].append(per_job_ms(insert, args.n))
    finally:
        asyncio.run(store.aclose())
        caller.close()
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    after = load_text()

    print(f"enqueue_sync(None, ...) on PostgreSQL, {args.n} jobs x {args.rounds} rounds")
    print(f"load average before: {before}; after: {after} (2 cores, shared)")
    print(f"{'case':<42} {'ms/job (median of rounds)':>26} {'range':>16}")
    for name, values in results.items():
        print(
            f"{name:<42} {statistics.median(values):>26.2f} {min(values):>7.2f}-{max(values):<7.2f}"
        )
    old, new, reference = results.values()
    ratios = [o / n for o, n in zip(old, new, strict=True)]
    print(
        f"per-round ratio one-off / reused: median {statistics.median(ratios):.1f}x "
        f"[{min(ratios):.1f}-{max(ratios):.1f}]"
    )
    vs_caller = [n / c for n, c in zip(new, reference, strict=True)]
    print(
        f"per-round ratio reused / caller's connection: median {statistics.median(vs_caller):.2f}x "
        f"[{min(vs_caller):.2f}-{max(vs_caller):.2f}]"
    )


if __name__ == "__main__":
    main()

"""Query plans and timings of the dashboard's queries on 1M jobs (SQLite and PostgreSQL).

    .venv/bin/python bench/dashboard_plans.py [postgresql://postgres@127.0.0.1:5432/test]

Fills a fresh outbox with 1,000,000 jobs (90% succeeded with erased payloads,
5% dead mail jobs, 4% queued, 1% running under 4 workers, 10 retrying, 10 of
a rare type), then prints, for each query the dashboard runs (every filter of
its listing form and their combinations, the bounded counts), its plan
(EXPLAIN QUERY PLAN / EXPLAIN ANALYZE) and its median time over 5 runs; then
the exact count `apitask outbox stats` and the Prometheus gauges still run
(a full scan), and the one search left without an index of its own (a
recipient domain with no state or type). The PostgreSQL schema is dropped at
the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from apitask.outbox import JobFilter, JobState, open_store
from apitask.outbox._browse import search_sql
from apitask.outbox._sql import load_queries, numbered

ROWS = int(os.environ.get("ROWS", "1000000"))
MAIL = (
    '{"message":{"to":"u@acme.example","subject":"s","html":"h","text":"t",'
    '"headers":{},"type":"signup","message_id":"<m@x>","date":"d"}}'
)
CASES = [
    ("newest page", JobFilter(), None),
    ("dead letters", JobFilter(JobState.DEAD), None),
    ("dead of one type", JobFilter(JobState.DEAD, type="mailer.signup"), None),
    ("a rare state (10 retrying)", JobFilter(JobState.RETRYING), None),
    ("queued", JobFilter(JobState.QUEUED), None),
    ("queued, a page deep down", JobFilter(JobState.QUEUED), 500_098),
    ("running", JobFilter(JobState.RUNNING), None),
    ("succeeded (newest finished first)", JobFilter(JobState.SUCCEEDED), None),
    ("succeeded, a page deep down", JobFilter(JobState.SUCCEEDED), 500_000),
    ("a rare type (10 jobs)", JobFilter(type="webhook.rare"), None),
    ("a common type, a page deep down", JobFilter(type="report"), 500_001),
    ("succeeded of a rare type", JobFilter(JobState.SUCCEEDED, type="webhook.rare"), None),
    ("queued of one type", JobFilter(JobState.QUEUED, type="report"), None),
    ("one request id", JobFilter(request_id="req-777"), None),
    ("one request id and a state", JobFilter(JobState.SUCCEEDED, request_id="req-777"), None),
    ("dead mail to a domain", JobFilter(JobState.DEAD, domain="acme.example"), None),
    ("queued mail to a domain", JobFilter(JobState.QUEUED, domain="acme.example"), None),
    ("mail of one type to a domain", JobFilter(type="mailer.signup", domain="acme.example"), None),
    ("a page deep down (keyset)", JobFilter(), 500_000),
]
# The domain alone (no state, no type) has no index of its own: kept to show
# its cost, for a domain some dead mail has and for one no job has (the worst).
GAPS = [
    ("mail to a domain, no state or type", JobFilter(domain="acme.example"), None),
    ("mail to a domain no job has, no state or type", JobFilter(domain="none.example"), None),
]
NAMED = ["oldest_due", "workers", "count_states", "count_types", "job"]
# `apitask outbox stats` and the Prometheus gauges: the exact count, a full scan.
EXACT = ["stats"]
CAP = 10_000
TYPE_CAP = 1_000  # the dashboard's: states with at most this many jobs are counted by type
# count_types reads the states count_states found with at most TYPE_CAP jobs:
# in this mix, retrying (10).
PARAMS: dict[str, object] = {
    "id": 123_456,
    "cap": CAP + 1,
    "queued": False,
    "running": False,
    "retrying": True,
    "dead": False,
    "succeeded": False,
}


async def store_counts(url: str, **options: str) -> None:
    """Time the dashboard's whole read of the counts (the store's count_states)."""
    store = open_store(url, **options)  # type: ignore[arg-type]
    try:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            counts = await store.count_states(CAP, TYPE_CAP)  # type: ignore[attr-defined]
            times.append(time.perf_counter() - start)
    finally:
        await store.aclose()
    shown = ", ".join(f"{state} {counts.shown(state)}" for state in JobState)
    ms = statistics.median(times) * 1000
    print(f"### the store's count_states({CAP}, {TYPE_CAP}): {ms:.2f} ms\n\n```\n{shown}\n```\n")


def state_sql(n: str) -> str:
    """The SQL expression giving the n-th row its state (the same mix on both databases)."""
    return (
        f"CASE WHEN {n} % 100000 = 0 THEN 'retrying'"
        f" WHEN {n} % 100 < 90 THEN 'succeeded' WHEN {n} % 100 < 95 THEN 'dead'"
        f" WHEN {n} % 100 < 99 THEN 'queued' ELSE 'running' END"
    )


def type_sql(n: str) -> str:
    """The n-th row's type: dead mail, ten jobs of a rare type among a million, reports."""
    return (
        f"CASE WHEN {n} % 100 BETWEEN 90 AND 94 THEN 'mailer.signup'"
        f" WHEN {n} % 100000 = 50 THEN 'webhook.rare' ELSE 'report' END"
    )


def timed(run: object) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def sqlite_plans(path: Path) -> None:
    async def migrate() -> None:
        store = open_store(f"sqlite:///{path}")
        await store.migrate()
        await store.aclose()

    asyncio.run(migrate())
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    n = "value"
    conn.execute(
        "WITH RECURSIVE c(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM c WHERE value < ?)"
        " INSERT INTO apitask_jobs (type, payload, state, attempts, run_at, created_at,"
        " finished_at, locked_by, locked_until, request_id, last_error)"
        f" SELECT {type_sql(n)},"
        f" CASE WHEN {n} % 100 BETWEEN 90 AND 94 THEN ? ELSE '{{}}' END, {state_sql(n)}, 1,"
        f" 1.7e9 + {n}, 1.7e9 + {n}, 1.7e9 + {n},"
        f" CASE WHEN {n} % 100 = 99 THEN 'w' || ({n} % 4) END,"
        f" CASE WHEN {n} % 100 = 99 THEN 2e9 END, 'req-' || {n}, NULL FROM c",
        (ROWS, MAIL),
    )
    conn.commit()
    conn.execute("ANALYZE")
    queries = load_queries("sqlite")
    print("## SQLite\n")
    for title, where, before in CASES + GAPS:
        sql, params = search_sql("sqlite", where, before, 51)
        report_sqlite(conn, title, sql, params)
    for name in NAMED + EXACT:
        report_sqlite(conn, name, queries[name], {"now": 1.8e9, **PARAMS})
    asyncio.run(store_counts(f"sqlite:///{path}"))


def report_sqlite(
    conn: sqlite3.Connection, title: str, sql: str, params: dict[str, object]
) -> None:
    plan = [row["detail"] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    ms = timed(lambda: conn.execute(sql, params).fetchall())
    print(f"### {title}: {ms:.2f} ms\n\n```\n" + "\n".join(plan) + "\n```\n")


async def postgres_plans(url: str) -> None:
    schema = f"apitask_dashboard_plans_{secrets.token_hex(4)}"
    store = open_store(url, schema=schema)
    await store.migrate()
    await store.aclose()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        n = "g"
        await conn.execute(
            "INSERT INTO apitask_jobs (type, payload, state, attempts, run_at, created_at,"
            " finished_at, locked_by, locked_until, request_id)"
            f" SELECT {type_sql(n)},"
            f" CASE WHEN {n} % 100 BETWEEN 90 AND 94 THEN $2 ELSE '{{}}' END, {state_sql(n)}, 1,"
            " now() - interval '1 day' + g * interval '1 ms', now() - interval '1 day',"
            " now() - interval '1 day' + g * interval '1 ms',"
            f" CASE WHEN {n} % 100 = 99 THEN 'w' || ({n} % 4) END,"
            f" CASE WHEN {n} % 100 = 99 THEN now() + interval '1 hour' END, 'req-' || {n}"
            " FROM generate_series(1, $1) AS g",
            ROWS,
            MAIL,
        )
        await conn.execute("VACUUM ANALYZE apitask_jobs")
        queries = load_queries("postgres")
        print("## PostgreSQL\n")
        for title, where, before in CASES + GAPS:
            sql, params = search_sql("postgresql", where, before, 51)
            await report_postgres(conn, title, sql, params)
        for name in [*NAMED, "state_estimates", *EXACT]:
            await report_postgres(conn, name, queries[name], PARAMS)
        await store_counts(url, schema=schema)
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def report_postgres(
    conn: asyncpg.Connection, title: str, sql: str, params: dict[str, object]
) -> None:
    text, names = numbered(sql)
    args = [params[name] for name in names]
    plan = await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + text, *args)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        await conn.fetch(text, *args)
        times.append(time.perf_counter() - start)
    ms = statistics.median(times) * 1000
    lines = "\n".join(row[0] for row in plan)
    print(f"### {title}: {ms:.2f} ms\n\n```\n{lines}\n```\n")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        sqlite_plans(Path(folder) / "outbox.db")
    if len(sys.argv) > 1:
        asyncio.run(postgres_plans(sys.argv[1]))


if __name__ == "__main__":
    main()

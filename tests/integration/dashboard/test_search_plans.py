"""The dashboard's searches are served by indexes (outbox migration 4), on both databases.

A version-3 outbox with jobs in it is upgraded by migration 4 alone; the
searches then find the same jobs, and their plans (EXPLAIN on a few thousand
rows, analysed) read an index, never the whole table: one request's jobs,
failed jobs by state however rare, and dead mail to a domain. An index an
operator built beforehand is kept (the migration creates them IF NOT EXISTS).
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

import apitask.outbox.postgres as postgres_module
import apitask.outbox.sqlite as sqlite_module
from apitask.outbox import JobFilter, JobState, open_store
from apitask.outbox._browse import search_sql
from apitask.outbox._sql import numbered

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ROWS = 20_000
MAIL = '{"message": {"to": "U@Acme.Example", "subject": "s", "text": "t"}}'
# Every 20th job is dead mail, every 5,000th is retrying, the rest succeeded;
# each has a request id of its own.
FILL = (
    " SELECT CASE WHEN {n} % 20 = 0 THEN 'mailer.signup' ELSE 'report' END,"
    " CASE WHEN {n} % 20 = 0 THEN {mail} ELSE '{{}}' END,"
    " CASE WHEN {n} % 5000 = 1 THEN 'retrying' WHEN {n} % 20 = 0 THEN 'dead'"
    " ELSE 'succeeded' END, 1, {now}, {now}, 'req-' || {n}"
)
COLUMNS = "(type, payload, state, attempts, run_at, created_at, request_id)"
SEARCHES = {
    "request id": (JobFilter(request_id="req-777"), "apitask_jobs_request_id"),
    "dead letters": (JobFilter(JobState.DEAD), "apitask_jobs_failures"),
    "a rare state": (JobFilter(JobState.RETRYING), "apitask_jobs_failures"),
    "dead mail to a domain": (
        JobFilter(JobState.DEAD, domain="acme.example"),
        "apitask_jobs_failures",
    ),
}


@pytest.fixture
async def store_at_3(database: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """A store whose database has outbox migrations 1 to 3 only, and ROWS jobs."""
    dialect = "sqlite" if database.startswith("sqlite") else "postgresql"
    module: Any = sqlite_module if dialect == "sqlite" else postgres_module
    schema = f"apitask_search_test_{secrets.token_hex(4)}"
    store: Any = (
        open_store(database) if dialect == "sqlite" else open_store(database, schema=schema)
    )
    monkeypatch.setattr(module, "_MIGRATIONS", module._MIGRATIONS[:3])
    assert await store.migrate() == [1, 2, 3]
    monkeypatch.undo()
    try:
        if dialect == "sqlite":
            await asyncio.to_thread(fill_sqlite, database.removeprefix("sqlite:///"))
        else:
            await fill_postgres(database, schema)
        yield store
    finally:
        await store.aclose()
        if dialect == "postgresql":
            admin = await asyncpg.connect(database)
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()


def fill_sqlite(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < ?)"
            f" INSERT INTO apitask_jobs {COLUMNS}"
            + FILL.format(n="n", mail="?", now="1.7e9")
            + " FROM c",
            (ROWS, MAIL),
        )
    finally:
        conn.close()


async def fill_postgres(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(
            f"INSERT INTO apitask_jobs {COLUMNS}"
            + FILL.format(n="g", mail="$2", now="now()")
            + " FROM generate_series(1, $1) AS g",
            ROWS,
            MAIL,
        )
    finally:
        await conn.close()


def run_sqlite(path: str, sql: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql)
    finally:
        conn.close()


def sqlite_plan(path: str, sql: str, params: dict[str, object]) -> str:
    conn = sqlite3.connect(path)
    try:
        conn.execute("ANALYZE")
        return "\n".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    finally:
        conn.close()


async def postgres_plan(url: str, schema: str, sql: str, params: dict[str, object]) -> str:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute("ANALYZE apitask_jobs")
        text, names = numbered(sql)
        rows = await conn.fetch("EXPLAIN " + text, *(params[name] for name in names))
        return "\n".join(row[0] for row in rows)
    finally:
        await conn.close()


async def test_migration_4_indexes_the_searches_of_an_outbox_at_version_3(
    store_at_3: Any, database: str
) -> None:
    """Upgraded (migrations 4 and 5), the outbox keeps every job; each search's plan
    then reads its index and finds what it should (the old plans scanned the table or the key).
    One index was built beforehand by an operator (concurrently on PostgreSQL):
    the migration keeps it."""
    prebuilt = (
        "CREATE INDEX {how} apitask_jobs_request_id ON apitask_jobs (request_id, id)"
        " WHERE request_id IS NOT NULL"
    )
    if database.startswith("sqlite"):
        await asyncio.to_thread(
            run_sqlite, database.removeprefix("sqlite:///"), prebuilt.format(how="")
        )
    else:
        admin = await asyncpg.connect(database)
        await admin.execute(f'SET search_path TO "{store_at_3.schema}"')
        await admin.execute(prebuilt.format(how="CONCURRENTLY"))
        await admin.close()
    assert await store_at_3.migrate() == [4, 5]  # 5 (job history, dashboard indexes) comes with it
    assert await store_at_3.migrate() == []
    dialect = "sqlite" if database.startswith("sqlite") else "postgresql"
    for title, (where, index) in SEARCHES.items():
        sql, params = search_sql(dialect, where, None, 51)
        if dialect == "sqlite":
            plan = await asyncio.to_thread(
                sqlite_plan, database.removeprefix("sqlite:///"), sql, params
            )
            assert f"USING INDEX {index}" in plan, (title, plan)
        else:
            plan = await postgres_plan(database, store_at_3.schema, sql, params)
            # At this size a bitmap scan of the index and a sort of its few
            # rows may win; at 1M rows (bench/dashboard_plans.py) it walks it.
            assert f" {index} " in plan, (title, plan)
            assert "Seq Scan" not in plan, (title, plan)
    found = {
        title: [(job.id, job.state.value) for job in await store_at_3.search(where, None, 51)]
        for title, (where, _) in SEARCHES.items()
    }
    dead = [(id, "dead") for id in range(ROWS, 0, -20)][:51]
    assert found == {
        "request id": [(777, "succeeded")],
        "dead letters": dead,
        "a rare state": [(id, "retrying") for id in range(ROWS - 4999, 0, -5000)],
        "dead mail to a domain": dead,
    }
    assert await store_at_3.search(JobFilter(domain="other.example"), None, 51) == []

"""The dashboard at scale (outbox migration 5), on SQLite and PostgreSQL: counts
bounded by a cap, and a listing page for every filter through an index.

The counts are checked against the jobs written (exact below the cap, capped
or estimated above it, labelled so); every page filter against the jobs it
should list, in order, page by page; and the plans of the hot queries, on a
few thousand analysed rows, against the index each should read.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

import apitask.outbox.postgres as postgres_module
import apitask.outbox.sqlite as sqlite_module
from apitask import dashboard
from apitask.outbox import JobFilter, JobState, open_store
from apitask.outbox._browse import StateCounts, search_sql, state_counts
from apitask.outbox._sql import load_queries

from .test_search_plans import postgres_plan, run_sqlite, sqlite_plan

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from apitask.outbox import Job

ROWS = 4000
COLUMNS = (
    "(type, payload, state, attempts, run_at, created_at, finished_at, locked_by,"
    " locked_until, request_id)"
)


def fill_sql(n: str, now: str, finished: str, later: str) -> str:
    """The n-th job: every 100th queued, the next running, every 1,000th (from 5)
    retrying, every 20th (from 3) dead, the rest succeeded; 4 of a rare type.
    Finished jobs finish in pairs (two at one time), the lowest ids last."""
    return (
        f" SELECT CASE WHEN {n} % 1000 = 7 THEN 'webhook.rare' ELSE 'report' END, '{{}}',"
        f" CASE WHEN {n} % 100 = 0 THEN 'queued' WHEN {n} % 100 = 1 THEN 'running'"
        f" WHEN {n} % 1000 = 5 THEN 'retrying' WHEN {n} % 20 = 3 THEN 'dead'"
        f" ELSE 'succeeded' END, 1, {now}, {now},"
        f" CASE WHEN {n} % 100 > 1 AND {n} % 1000 <> 5 THEN {finished} END,"
        f" CASE WHEN {n} % 100 = 1 THEN 'w1' END, CASE WHEN {n} % 100 = 1 THEN {later} END,"
        f" 'req-' || {n}"
    )


def expected_state(n: int) -> JobState:
    if n % 100 == 0:
        return JobState.QUEUED
    if n % 100 == 1:
        return JobState.RUNNING
    if n % 1000 == 5:
        return JobState.RETRYING
    return JobState.DEAD if n % 20 == 3 else JobState.SUCCEEDED


@pytest.fixture
async def store(database: str) -> AsyncIterator[Any]:
    """A migrated store (every migration) holding ROWS jobs, analysed."""
    if database.startswith("sqlite"):
        opened: Any = open_store(database)
        await opened.migrate()
        await asyncio.to_thread(fill_sqlite, database.removeprefix("sqlite:///"))
        try:
            yield opened
        finally:
            await opened.aclose()
        return
    schema = f"apitask_scale_test_{secrets.token_hex(4)}"
    opened = open_store(database, schema=schema)
    await opened.migrate()
    try:
        conn = await asyncpg.connect(database)
        try:
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute(
                f"INSERT INTO apitask_jobs {COLUMNS}"
                + fill_sql(
                    "g",
                    "now()",
                    f"now() + (({ROWS} - g) / 2) * interval '1 ms'",
                    "now() + interval '1 hour'",
                )
                + " FROM generate_series(1, $1) AS g",
                ROWS,
            )
            await conn.execute("ANALYZE apitask_jobs")
        finally:
            await conn.close()
        yield opened
    finally:
        await opened.aclose()
        admin = await asyncpg.connect(database)
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def fill_sqlite(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < ?)"
            f" INSERT INTO apitask_jobs {COLUMNS}"
            + fill_sql("n", "1.7e9", f"1.7e9 + ({ROWS} - n) / 2", "2e9")
            + " FROM c",
            (ROWS,),
        )
        conn.execute("ANALYZE")
    finally:
        conn.close()


def dialect_of(store: Any) -> str:
    return str(store.dialect)


# -- counts ------------------------------------------------------------------------


async def test_counts_are_exact_below_the_cap(store: Any) -> None:
    counts: StateCounts = await store.count_states(10_000, 10_000)
    jobs = [expected_state(n) for n in range(1, ROWS + 1)]
    assert counts.capped == frozenset()
    assert {state: counts.total(state) for state in JobState} == {
        state: jobs.count(state) for state in JobState
    }
    assert counts.shown(JobState.SUCCEEDED) == f"{jobs.count(JobState.SUCCEEDED):,}"
    rare = [expected_state(n) for n in range(7, ROWS + 1, 1000)]
    assert counts.by_type["webhook.rare"] == {JobState.SUCCEEDED: len(rare)}
    assert sum(counts.by_type["report"].values()) == ROWS - len(rare)


async def test_counts_above_the_cap_are_capped_or_estimated(store: Any) -> None:
    """With a cap of 100, dead (200) and succeeded are over it: SQLite says
    "100+"; PostgreSQL gives the planner's estimate (the table was analysed,
    every row sampled: the estimate is the count). The small states stay exact,
    and only they are counted by type."""
    counts: StateCounts = await store.count_states(100, 100)
    assert counts.capped == {JobState.DEAD, JobState.SUCCEEDED}
    assert counts.typed == {JobState.QUEUED, JobState.RUNNING, JobState.RETRYING}
    small = (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)
    assert [counts.total(state) for state in small] == [40, 40, 4]
    assert {type: by_state.keys() for type, by_state in counts.by_type.items()} == {
        "report": set(small)
    }
    if dialect_of(store) == "sqlite":
        assert [counts.shown(s) for s in JobState] == ["40", "40", "100+", "4", "100+"]
        assert counts.total(JobState.DEAD) == 100
    else:
        assert [counts.shown(s) for s in JobState] == ["40", "40", "≈ 3,716", "4", "≈ 200"]
        assert counts.total(JobState.SUCCEEDED) == 3716


async def test_counts_of_an_empty_outbox(database: str) -> None:
    """No job: every state 0, nothing by type, no statistics read (PostgreSQL
    has none yet for a new table)."""
    schema = f"apitask_scale_empty_{secrets.token_hex(4)}"
    store: Any = (
        open_store(database)
        if database.startswith("sqlite")
        else open_store(database, schema=schema)
    )
    try:
        await store.migrate()
        counts: StateCounts = await store.count_states(5, 5)
        assert [counts.shown(s) for s in JobState] == ["0"] * 5
        assert counts.by_type == {}
        # Over the cap before any ANALYZE: the catalog has no estimate yet.
        for n in range(7):
            await store.insert(None, _new(f"t{n % 2}"))
        fresh: StateCounts = await store.count_states(5, 5)
        assert fresh.shown(JobState.QUEUED) == "5+"
        assert fresh.estimates == {}
    finally:
        await store.aclose()
        if not database.startswith("sqlite"):
            admin = await asyncpg.connect(database)
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()


def _new(type: str) -> Any:
    from apitask.outbox._store import NewJob

    return NewJob(type, "{}")


async def test_only_the_states_below_the_type_cap_are_counted_by_type(store: Any) -> None:
    """Counting by type reads a row per job: only states with at most type_cap
    jobs are (here the 4 retrying jobs, not the 40 queued or running)."""
    counts: StateCounts = await store.count_states(100, 10)
    assert counts.typed == {JobState.RETRYING}
    assert counts.by_type == {"report": {JobState.RETRYING: 4}}
    assert counts.total(JobState.QUEUED) == 40  # still counted, exactly


def test_state_counts_keeps_only_estimates_above_the_cap() -> None:
    """A stale estimate below the cap says less than the count: it is dropped."""
    counts = state_counts(
        10,
        {"queued": 11, "succeeded": 11, "dead": 3},
        [("dead", "x", 3)],
        {"queued": 8, "succeeded": 5000, "dead": 2},
        type_cap=5,
    )
    assert counts.typed == {JobState.DEAD}
    assert counts.estimates == {JobState.SUCCEEDED: 5000}
    assert [counts.shown(s) for s in JobState] == ["10+", "0", "≈ 5,000", "0", "3"]


async def test_the_page_labels_capped_counts(store: Any, database: str) -> None:
    from apitask.outbox import Outbox, TaskRegistry

    outbox = Outbox(store, TaskRegistry())
    app = dashboard.app(outbox, allow_anonymous=True, count_cap=100)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://dash.test"
    ) as client:
        page = await client.get("/")
        summary = (await client.get("/api/summary")).json()
    over = "100+" if database.startswith("sqlite") else "≈ 3,716"
    assert f'data-total="succeeded">{over}<' in page.text
    assert 'data-total="queued">40<' in page.text
    assert 'id="capped"' in page.text
    assert summary["shown"]["succeeded"] == over
    assert summary["capped"] == ["dead", "succeeded"]
    assert summary["untyped"] == ["succeeded", "dead"]  # over the type cap (100 here)
    assert 'id="untyped"' in page.text
    assert "<td>…</td>" in page.text
    with pytest.raises(ValueError, match="count_cap"):
        dashboard.app(outbox, allow_anonymous=True, count_cap=0)


# -- pages ---------------------------------------------------------------------------


async def every_page(store: Any, where: JobFilter, limit: int) -> list[list[Job]]:
    """Every page of ``where``'s listing, following the cursor as the page does."""
    pages: list[list[Job]] = []
    before = None
    while True:
        page = await store.search(where, before, limit + 1)
        pages.append(page[:limit])
        if len(page) <= limit:
            return pages
        before = page[limit - 1].id


@pytest.mark.parametrize(
    "where",
    [
        JobFilter(JobState.QUEUED),
        JobFilter(JobState.RUNNING),
        JobFilter(JobState.RETRYING),
        JobFilter(type="webhook.rare"),
        JobFilter(JobState.SUCCEEDED, type="webhook.rare"),
        JobFilter(JobState.QUEUED, type="report"),
    ],
    ids=str,
)
async def test_each_filter_lists_its_jobs_newest_first_page_by_page(
    store: Any, where: JobFilter
) -> None:
    pages = await every_page(store, where, 150)
    listed = [job.id for page in pages for job in page]
    wanted = [
        n
        for n in range(ROWS, 0, -1)
        if (where.state is None or expected_state(n) is where.state)
        and (where.type is None or (where.type == "webhook.rare") == (n % 1000 == 7))
    ]
    assert listed == wanted
    assert all(len(page) == 150 for page in pages[:-1])


async def test_succeeded_are_listed_newest_finished_first_across_ties(store: Any) -> None:
    """Succeeded jobs alone come by (finished_at, id), newest first: jobs finished
    at one time (here in pairs) are neither lost nor repeated at a page's edge,
    whatever the page size."""
    succeeded = [n for n in range(1, ROWS + 1) if expected_state(n) is JobState.SUCCEEDED]
    wanted = sorted(succeeded, key=lambda n: ((ROWS - n) // 2, n), reverse=True)
    assert wanted != sorted(succeeded, reverse=True)  # the order is not the ids'
    for limit in (7, 250):
        pages = await every_page(store, JobFilter(JobState.SUCCEEDED), limit)
        assert [job.id for page in pages for job in page] == wanted
        finished = [job.finished_at for page in pages for job in page]
        assert finished == sorted(finished, reverse=True)  # type: ignore[type-var]


# -- plans ---------------------------------------------------------------------------

PLANS = {
    "queued": (JobFilter(JobState.QUEUED), None, "apitask_jobs_active"),
    "queued, deeper": (JobFilter(JobState.QUEUED), 2000, "apitask_jobs_active"),
    "dead": (JobFilter(JobState.DEAD), None, "apitask_jobs_failures"),
    # Few running jobs: PostgreSQL may read the lease index (every running job)
    # and sort them; at 1M jobs it walks apitask_jobs_active (bench/dashboard_plans.py).
    "running": (JobFilter(JobState.RUNNING), None, "apitask_jobs_active|apitask_jobs_leased"),
    "succeeded": (JobFilter(JobState.SUCCEEDED), None, "apitask_jobs_finished"),
    "succeeded, deeper": (JobFilter(JobState.SUCCEEDED), 2002, "apitask_jobs_finished"),
    "a rare type": (JobFilter(type="webhook.rare"), None, "apitask_jobs_type"),
    # A type nearly every job has: PostgreSQL may walk the primary key (a page
    # of it holds a page of that type); either way an index, bounded by a page.
    "a type, deeper": (JobFilter(type="report"), 2000, "apitask_jobs_type|apitask_jobs_pkey"),
    "succeeded of a rare type": (
        JobFilter(JobState.SUCCEEDED, type="webhook.rare"),
        None,
        "apitask_jobs_type",
    ),
}
# Read at import: a file read on the event loop is a blocking call.
QUERIES = {"sqlite": load_queries("sqlite"), "postgresql": load_queries("postgres")}
# The counts: each state through its own index.
COUNT_INDEXES = ["apitask_jobs_active", "apitask_jobs_failures", "apitask_jobs_finished"]


async def plan_of(store: Any, database: str, sql: str, params: dict[str, object]) -> str:
    if database.startswith("sqlite"):
        return await asyncio.to_thread(
            sqlite_plan, database.removeprefix("sqlite:///"), sql, params
        )
    return await postgres_plan(database, store.schema, sql, params)


def assert_no_table_scan(plan: str, title: str) -> None:
    # "SCAN apitask_jobs" alone reads the table; "... USING INDEX x" walks x.
    assert "SCAN apitask_jobs\n" not in plan + "\n", (title, plan)
    assert "Seq Scan" not in plan, (title, plan)


async def test_every_filter_and_count_reads_an_index(store: Any, database: str) -> None:
    dialect = dialect_of(store)
    for title, (where, before, index) in PLANS.items():
        sql, params = search_sql(dialect, where, before, 51)
        plan = await plan_of(store, database, sql, params)
        assert any(name in plan for name in index.split("|")), (title, plan)
        assert_no_table_scan(plan, title)
    queries = QUERIES[dialect]
    plan = await plan_of(store, database, queries["count_states"], {"cap": 101})
    assert all(index in plan for index in COUNT_INDEXES), plan
    assert_no_table_scan(plan, "count_states")
    # By type: the states below a cap of 100, as count_states(100) asks.
    below: dict[str, object] = {"queued": True, "running": True, "retrying": True, "dead": False}
    plan = await plan_of(store, database, queries["count_types"], below | {"succeeded": False})
    assert all(index in plan for index in COUNT_INDEXES[:2]), plan
    assert_no_table_scan(plan, "count_types")


async def test_migration_5_alone_upgrades_an_outbox_at_version_4(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outbox at version 4 with jobs is upgraded by migration 5 alone, keeping
    them; an index an operator built beforehand is kept."""
    sqlite = database.startswith("sqlite")
    module: Any = sqlite_module if sqlite else postgres_module
    schema = f"apitask_scale_v4_{secrets.token_hex(4)}"
    store: Any = open_store(database) if sqlite else open_store(database, schema=schema)
    monkeypatch.setattr(module, "_MIGRATIONS", module._MIGRATIONS[:4])
    try:
        assert await store.migrate() == [1, 2, 3, 4]
        monkeypatch.undo()
        for n in range(5):
            await store.insert(None, _new("webhook.rare" if n == 2 else "report"))
        prebuilt = "CREATE INDEX apitask_jobs_type ON apitask_jobs (type, id)"
        if sqlite:
            await asyncio.to_thread(run_sqlite, database.removeprefix("sqlite:///"), prebuilt)
        else:
            admin = await asyncpg.connect(database)
            await admin.execute(f'SET search_path TO "{schema}"')
            await admin.execute(prebuilt)
            await admin.close()
        assert await store.migrate() == [5]
        assert [j.id for j in await store.search(JobFilter(type="webhook.rare"), None, 9)] == [3]
        assert [j.id for j in await store.search(JobFilter(JobState.QUEUED), 5, 9)] == [4, 3, 2, 1]
    finally:
        await store.aclose()
        if not sqlite:
            admin = await asyncpg.connect(database)
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()

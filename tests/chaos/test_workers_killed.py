"""Scenario 1: three outbox workers share one PostgreSQL; one is SIGKILLed mid-run.

Every job must still run (its leases expire and the survivors take them
over), and the only jobs that may run twice are those the killed worker held
when it died. To know exactly which those were, the victim is frozen with
SIGSTOP first: its leases are read while it cannot change them, then it is
SIGKILLed. A job whose run the victim recorded but whose success it never
wrote back is the duplicate at-least-once allows.
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from ._support import Process, Tally, env_with, kill_holding, poll, python, size

if TYPE_CHECKING:
    from collections.abc import Callable

    import asyncpg

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

JOBS = size(10_000, 10_000)
KILL_AFTER = JOBS // 3  # runs recorded before the kill: "mid-run"
LEASE = "5s"  # heartbeats every lease/3; short so that the takeover comes soon


async def start_worker(postgres_url: str, schema: str) -> Process:
    return await python(
        "-m", "apitask", "worker", "--app", "chaos_tasks:records",
        "--url", postgres_url, "--schema", schema, "--no-migrate",
        "-c", "20", "--lease", LEASE,
        env=env_with(CHAOS_PG_DSN=postgres_url, CHAOS_PG_SCHEMA=schema),
    )  # fmt: skip


async def test_three_workers_one_killed_mid_run(
    postgres_url: str, schema: str, pg: asyncpg.Connection, chaos_report: Callable[[Tally], None]
) -> None:
    """10,000 jobs, three workers, one SIGKILLed after a third: all run; duplicates are
    only jobs the killed worker held, and at most as many."""
    jobs, runs = f'"{schema}".apitask_jobs', f'"{schema}".runs'
    await pg.execute(
        f"INSERT INTO {jobs} (type, payload) SELECT 'chaos.record', "
        "json_build_object('n', g)::text FROM generate_series(1, $1) AS g",
        JOBS,
    )
    workers = [await start_worker(postgres_url, schema) for _ in range(3)]
    victim, survivors = workers[0], workers[1:]
    try:
        await poll(
            lambda: pg.fetchval(f"SELECT count(*) FROM {runs}"),
            lambda n: n >= KILL_AFTER,
            what=f"{KILL_AFTER} runs",
            timeout=120,
        )
        in_flight = await kill_holding(victim, pg, jobs, "(payload::json->>'n')::int")
        await poll(
            lambda: pg.fetchval(f"SELECT count(*) FROM {jobs} WHERE state = 'succeeded'"),
            lambda n: n == JOBS,
            what=f"{JOBS} succeeded jobs",
            timeout=180,
        )
        for worker in survivors:
            worker.signal(signal.SIGTERM)
        assert [await worker.wait(60) for worker in survivors] == [0, 0]
    finally:
        for worker in workers:
            await worker.reap()
    rows = await pg.fetch(f"SELECT n, pid FROM {runs}")
    tally = Tally(
        "3 PostgreSQL workers, 1 SIGKILLed",
        sent={str(n) for n in range(1, JOBS + 1)},
        deliveries=Counter(str(row["n"]) for row in rows),
        notes={"killed worker's in-flight": len(in_flight)},
    )
    chaos_report(tally)
    assert tally.lost == 0
    assert not tally.unexpected
    assert tally.duplicated <= len(in_flight)
    twice = {int(n) for n, count in tally.deliveries.items() if count > 1}
    assert twice <= in_flight
    by_job: dict[int, list[int]] = {}
    for row in rows:
        by_job.setdefault(row["n"], []).append(row["pid"])
    assert all(victim.pid in by_job[n] for n in twice)
    assert {row["pid"] for row in rows} == {worker.pid for worker in workers}  # all three worked
    states = await pg.fetch(f"SELECT state, count(*) FROM {jobs} GROUP BY state")
    assert [tuple(row) for row in states] == [("succeeded", JOBS)]

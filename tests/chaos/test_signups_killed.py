"""Scenario 4: SIGKILL during 5,000 sign-ups in outbox mode, then a restart.

``signup_producer`` commits sign-ups (user row + confirmation mail enqueued
in the same transaction; 10% roll back after the enqueue) while its own
outbox worker sends the mail. Half-way, the process is frozen (SIGSTOP), the
leases it holds are read, and it is SIGKILLed: sign-up transactions in
flight die with it. Then the system restarts: a producer takes the
sign-ups up again after the last committed one (with its own worker), and
an ``apitask worker`` joins, as on a second machine. The killed process's
jobs are taken over when its leases expire.

* Every committed sign-up gets its confirmation mail; no rolled-back or
  killed sign-up gets one.
* Duplicates only among the mails the killed process held leases on, at most
  that many.

This runs at the library level; test_service_signups_killed.py runs the
same scenario through ``apitask-auth serve`` in outbox mode.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

from ._support import Tally, env_with, kill_holding, poll, python, size
from .signup_producer import rolled_back

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import asyncpg

    from ._support import MailServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

SIGNUPS = size(5_000, 5_000)
KILL_AFTER = SIGNUPS // 2  # committed sign-ups before the kill


async def test_sigkill_during_signups_then_restart(
    postgres_url: str,
    schema: str,
    pg: asyncpg.Connection,
    mail_server: Callable[..., Awaitable[MailServer]],
    chaos_report: Callable[[Tally], None],
) -> None:
    """Each committed sign-up has its mail, rolled-back ones none; duplicates are bounded
    by the killed process's leases."""
    users, jobs = f'"{schema}".users', f'"{schema}".apitask_jobs'
    await pg.execute(f"CREATE TABLE {users} (id integer PRIMARY KEY, email text NOT NULL)")
    server = await mail_server("--delay", "0.01")
    env = env_with(
        CHAOS_PG_DSN=postgres_url,
        CHAOS_PG_SCHEMA=schema,
        CHAOS_SMTP_PORT=str(server.port),
        CHAOS_SMTP_POOL="8",
        CHAOS_SIGNUPS=str(SIGNUPS),
    )
    producer = await python("-m", "chaos.signup_producer", env=env, stdout=True)
    restarted = worker = None
    try:
        assert await producer.line() == "ready"
        await poll(
            lambda: pg.fetchval(f"SELECT count(*) FROM {users}"),
            lambda n: n >= KILL_AFTER,
            what=f"{KILL_AFTER} sign-ups",
            timeout=120,
        )
        in_flight = await kill_holding(producer, pg, jobs, "payload::json->'message'->>'to'")
        resume = await pg.fetchval(f"SELECT max(id) + 1 FROM {users}")
        restarted = await python("-m", "chaos.signup_producer", env=env | {
            "CHAOS_SIGNUP_START": str(resume)}, stdout=True)  # fmt: skip
        worker = await python(
            "-m", "apitask", "worker", "--app", "chaos_tasks:mails", "--url", postgres_url,
            "--schema", schema, "--no-migrate", "-c", "16", "--lease", "5s",
            env=env,
        )  # fmt: skip
        assert await restarted.line() == "ready"
        assert await restarted.line(timeout=120) == "done"
        await poll(
            lambda: pg.fetchval(f"SELECT count(*) FROM {jobs} WHERE state <> 'succeeded'"),
            lambda n: n == 0,
            what="every job succeeded",
            timeout=120,
        )
        for process in (restarted, worker):
            process.signal(signal.SIGTERM)
        assert [await restarted.wait(60), await worker.wait(60)] == [0, 0]
    finally:
        for started in (producer, restarted, worker):
            if started is not None:
                await started.reap()
    committed = {row["id"]: row["email"] for row in await pg.fetch(f"SELECT * FROM {users}")}
    # Every line the server printed before the worker exited is in the pipe: read them.
    await server.wait_for(server.reached(committed.values()), timeout=10)
    refused = {i for i in range(SIGNUPS) if rolled_back(i)}
    # neither committed nor rolled back by design: in a transaction the SIGKILL cut short
    cut_short = SIGNUPS - len(committed) - len(refused)
    tally = Tally(
        "outbox sign-ups, producer+worker SIGKILLed, restarted",
        sent=set(committed.values()),
        deliveries=server.delivered_to,
        notes={
            "rolled back": len(refused),
            "cut short by the kill": cut_short,
            "killed worker's in-flight": len(in_flight),
        },
    )
    chaos_report(tally)
    assert max(committed) > resume >= KILL_AFTER  # sign-ups both before the kill and after
    assert not refused & set(committed)  # a rolled-back sign-up left no user...
    assert (tally.lost, tally.unexpected) == (0, set())  # ...and no mail
    assert await pg.fetchval(f"SELECT count(*) FROM {jobs}") == len(committed)
    assert tally.duplicated <= len(in_flight)
    assert {rcpt for rcpt, n in tally.deliveries.items() if n > 1} <= in_flight

"""Scenario 4: SIGKILL during sign-ups in outbox mode, then a restarted worker.

``signup_producer`` commits sign-ups (user row + confirmation mail enqueued
in the same transaction; 10% roll back after the enqueue) while its own
outbox worker sends the mail. Half-way, the process is frozen (SIGSTOP), the
leases it holds are read, and it is SIGKILLed: sign-up transactions in
flight die with it. A fresh ``apitask worker`` then finishes the outbox.

* Every committed sign-up gets its confirmation mail; no rolled-back or
  killed sign-up gets one.
* Duplicates only among the mails the killed process held leases on, at most
  that many.

This runs at the library level; the same through ``apitask-auth serve`` in
outbox mode is still to do (docs/chaos.md).
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
    worker = None
    try:
        assert await producer.line() == "ready"
        await poll(
            lambda: pg.fetchval(f"SELECT count(*) FROM {users}"),
            lambda n: n >= KILL_AFTER,
            what=f"{KILL_AFTER} sign-ups",
            timeout=120,
        )
        in_flight = await kill_holding(producer, pg, jobs, "payload::json->'message'->>'to'")
        worker = await python(
            "-m", "apitask", "worker", "--app", "chaos_tasks:mails", "--url", postgres_url,
            "--schema", schema, "--no-migrate", "-c", "16", "--lease", "5s",
            env=env,
        )  # fmt: skip
        await poll(
            lambda: pg.fetchval(f"SELECT count(*) FROM {jobs} WHERE state <> 'succeeded'"),
            lambda n: n == 0,
            what="every job succeeded",
            timeout=120,
        )
        worker.signal(signal.SIGTERM)
        assert await worker.wait(60) == 0
    finally:
        await producer.reap()
        if worker is not None:
            await worker.reap()
    committed = {row["id"]: row["email"] for row in await pg.fetch(f"SELECT * FROM {users}")}
    # Every line the server printed before the worker exited is in the pipe: read them.
    await server.wait_for(server.reached(committed.values()), timeout=10)
    attempted = max(committed) + 1
    refused = {i for i in range(attempted) if rolled_back(i)}
    tally = Tally(
        "outbox sign-ups, producer+worker SIGKILLed, worker restarted",
        sent=set(committed.values()),
        deliveries=server.delivered_to,
        notes={
            "rolled back": len(refused),
            "killed worker's in-flight": len(in_flight),
        },
    )
    chaos_report(tally)
    assert len(committed) >= KILL_AFTER
    assert not refused & set(committed)  # a rolled-back sign-up left no user...
    assert (tally.lost, tally.unexpected) == (0, set())  # ...and no mail
    assert await pg.fetchval(f"SELECT count(*) FROM {jobs}") == len(committed)
    assert tally.duplicated <= len(in_flight)
    assert {rcpt for rcpt, n in tally.deliveries.items() if n > 1} <= in_flight

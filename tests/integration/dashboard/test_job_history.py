"""One job's history (apitask_job_events) on SQLite and PostgreSQL, and on its page.

Every event is written by the statement (PostgreSQL) or the transaction
(SQLite) that changes the job's row: these tests read them back through the
store and the dashboard, on real databases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import httpx
import pytest

from apitask import Backoff, TransientError, dashboard
from apitask.outbox import EVENTS_KEPT, JobState, Outbox
from apitask.outbox._records import Finish, Verdict

from .conftest import Flaky, csrf_token, form, run_jobs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from apitask import JSONValue
    from apitask.outbox import JobEvent
    from apitask.outbox.sqlite import SQLiteStore


class Stubborn:
    """Fails with a TransientError (due again at once) while it has failures left."""

    failures_left: ClassVar[dict[str, int]] = {}

    def __init__(self, name: str, type: str = "stubborn") -> None:
        self.name = name
        self.type = type

    def payload(self) -> Mapping[str, JSONValue]:
        return {"name": self.name}

    async def run(self) -> None:
        left = Stubborn.failures_left.get(self.name, 0)
        if left:
            Stubborn.failures_left[self.name] = left - 1
            raise TransientError(f"<b>{self.name}</b> has {left} to go", retry_after=0.0)
        if self.type == "stubborn.permanent":
            raise RuntimeError(f"<img src=x onerror=alert('{self.name}')>")


@pytest.fixture(autouse=True)
def _stubborn(outbox: Outbox) -> None:
    Stubborn.failures_left = {}
    outbox.registry.register_prefix(
        "stubborn", lambda type, payload: Stubborn(str(payload["name"]), type)
    )


@pytest.fixture
async def client(outbox: Outbox) -> AsyncIterator[httpx.AsyncClient]:
    app = dashboard.app(outbox, auth=lambda request: "ops@example.test")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://dash.test"
    ) as client:
        yield client


async def history(outbox: Outbox, job_id: int, limit: int = 1000) -> list[JobEvent]:
    return await outbox.store.events(job_id, limit)  # type: ignore[attr-defined, no-any-return]


async def run_until_empty(outbox: Outbox, **options: object) -> str:
    """Run every due job (retries included) to its end; return the worker's name."""
    options = {"listen": False, "poll_interval": 0.01, **options}
    worker = outbox.worker(**options)
    await worker.run(until_empty=True)
    return worker.name


async def test_failed_attempts_are_recorded_in_order_and_a_success_writes_none(
    outbox: Outbox,
) -> None:
    job_id = await outbox.enqueue(None, Stubborn("twice"))
    assert job_id is not None
    Stubborn.failures_left["twice"] = 2
    worker = await run_until_empty(outbox)
    job = await outbox.store.job(job_id)  # type: ignore[attr-defined]
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 3)
    events = await history(outbox, job_id)
    assert [(e.kind, e.attempt, e.worker, e.detail) for e in events] == [
        ("failed", 2, worker, "TransientError: <b>twice</b> has 1 to go"),
        ("failed", 1, worker, "TransientError: <b>twice</b> has 2 to go"),
    ]
    assert events[0].id > events[1].id and events[0].at >= events[1].at
    assert all(e.run_at is not None and e.job_id == job_id for e in events)
    # The newest first, bounded by the caller.
    assert [e.attempt for e in await history(outbox, job_id, 1)] == [2]


async def test_a_dead_job_records_why(outbox: Outbox) -> None:
    [job_id] = [await outbox.enqueue(None, Flaky("broken"))]
    assert job_id is not None
    await run_jobs(outbox)  # max_attempts=1: the RuntimeError is final
    [event] = await history(outbox, job_id)
    assert (event.kind, event.attempt, event.detail) == (
        "dead",
        1,
        "RuntimeError: flaky broken is broken",
    )
    assert event.worker is not None and event.run_at is None


async def test_operator_retries_and_cancels_are_recorded_and_bounded(outbox: Outbox) -> None:
    """Who retried or cancelled; and a job cycled for ever keeps its newest events only."""
    job_id = await outbox.enqueue(None, Flaky("cycled"))
    assert job_id is not None
    await run_jobs(outbox)
    assert await outbox.retry([job_id], by="alice on the command line") == 1
    retried = (await history(outbox, job_id))[0]
    assert (retried.kind, retried.attempt, retried.worker, retried.detail) == (
        "retried",
        None,
        None,
        "alice on the command line",
    )
    assert retried.run_at is not None
    assert await outbox.store.cancel([job_id], "cancelled by bob") == 1  # type: ignore[attr-defined]
    cancelled = (await history(outbox, job_id))[0]
    assert (cancelled.kind, cancelled.detail, cancelled.run_at) == (
        "cancelled",
        "cancelled by bob",
        None,
    )
    # Nothing matched: no event.
    assert await outbox.store.cancel([job_id], "again") == 0  # type: ignore[attr-defined]
    assert await outbox.retry([job_id + 1000]) == 0
    assert len(await history(outbox, job_id)) == 3
    for round in range(30):
        assert await outbox.retry([job_id], by=f"round {round}") == 1
        assert await outbox.store.cancel([job_id], f"cancel {round}") == 1  # type: ignore[attr-defined]
    events = await history(outbox, job_id)
    assert len(events) == EVENTS_KEPT
    assert [e.detail for e in events[:2]] == ["cancel 29", "round 29"]
    assert [e.detail for e in events[-2:]] == ["cancel 5", "round 5"]  # 63 written
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)


async def test_a_job_failing_more_than_the_bound_keeps_its_newest_failures(
    outbox: Outbox,
) -> None:
    job_id = await outbox.enqueue(None, Stubborn("many"))
    assert job_id is not None
    Stubborn.failures_left["many"] = EVENTS_KEPT + 5
    await run_until_empty(outbox, backoff=Backoff(max_attempts=100))
    events = await history(outbox, job_id)
    assert [e.attempt for e in events] == list(range(EVENTS_KEPT + 5, 5, -1))


async def test_a_lease_taken_over_names_the_worker_that_lost_it(outbox: Outbox) -> None:
    job_id = await outbox.enqueue(None, Stubborn("orphan"))
    assert job_id is not None
    store = outbox.store
    [claimed] = await store.claim("ghost", 10, lease=-1.0)  # already expired
    assert claimed.id == job_id
    assert await store.reap("ghost") == 0  # its own lease: not taken over, no event
    assert await history(outbox, job_id) == []
    assert await store.reap("reaper") == 1
    assert await store.reap("reaper") == 0
    [event] = await history(outbox, job_id)
    assert (event.kind, event.attempt, event.worker) == ("lease_expired", 1, "ghost")
    assert event.detail == "lease expired; taken over by worker reaper"
    assert event.run_at is not None
    worker = await run_until_empty(outbox)
    assert (await outbox.store.job(job_id)).attempts == 2  # type: ignore[attr-defined]
    assert worker != "ghost"


async def test_a_write_back_by_a_worker_that_lost_the_job_records_nothing(
    outbox: Outbox,
) -> None:
    job_id = await outbox.enqueue(None, Stubborn("held"))
    assert job_id is not None
    await outbox.store.claim("holder", 10, lease=30.0)
    late = [
        Finish(job_id, Verdict.RETRY, delay=1.0, error="late"),
        Finish(job_id, Verdict.DEAD, error="late"),
    ]
    await outbox.store.finish("not-the-holder", late, keep=True)
    assert await history(outbox, job_id) == []
    assert (await outbox.store.job(job_id)).state is JobState.RUNNING  # type: ignore[attr-defined]


async def test_events_go_with_their_job(outbox: Outbox) -> None:
    """Retention (a success with retention 0) and purge delete the jobs' events too."""
    kept = await outbox.enqueue(None, Flaky("kept"), delay=3600)
    dead = await outbox.enqueue(None, Flaky("purged"))
    assert kept is not None and dead is not None
    await run_jobs(outbox)
    assert await outbox.store.cancel([kept], "cancelled by ops") == 1  # type: ignore[attr-defined]
    assert await outbox.purge(JobState.DEAD, older_than=3600) == 0
    assert len(await history(outbox, dead)) == 1
    # Only the older one goes: the cancelled job finished just now.
    await _age_finished(outbox, dead, 7200)
    assert await outbox.purge(JobState.DEAD, older_than=3600) == 1
    assert await history(outbox, dead) == []
    assert [e.kind for e in await history(outbox, kept)] == ["cancelled"]
    once = await outbox.enqueue(None, Stubborn("once"))
    assert once is not None
    Stubborn.failures_left["once"] = 1
    await run_until_empty(outbox, retention=0.0)
    assert await outbox.store.job(once) is None  # type: ignore[attr-defined]
    assert await history(outbox, once) == []
    assert await _events_left(outbox) == 1  # the cancelled job's, and no orphan


async def _age_finished(outbox: Outbox, job_id: int, seconds: int) -> None:
    """Move a job's finished_at back by ``seconds`` (as time would)."""
    store = outbox.store
    if store.dialect == "sqlite":
        sql = "UPDATE apitask_jobs SET finished_at = finished_at - :s WHERE id = :id"
        await _sqlite(outbox, sql, {"s": seconds, "id": job_id})
        return
    import asyncpg

    conn = await asyncpg.connect(store.dsn)  # type: ignore[attr-defined]
    try:
        table = store.qualify("apitask_jobs")  # type: ignore[attr-defined]
        await conn.execute(
            f"UPDATE {table} SET finished_at = finished_at - make_interval(secs => $1) "
            "WHERE id = $2",
            float(seconds),
            job_id,
        )
    finally:
        await conn.close()


async def _events_left(outbox: Outbox) -> int:
    """Every event row in the database, whatever its job."""
    store = outbox.store
    if store.dialect == "sqlite":
        return await _sqlite(outbox, "SELECT count(*) FROM apitask_job_events", {})
    import asyncpg

    conn = await asyncpg.connect(store.dsn)  # type: ignore[attr-defined]
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM " + store.qualify("apitask_job_events")  # type: ignore[attr-defined]
        )
    finally:
        await conn.close()
    return count


async def _sqlite(outbox: Outbox, sql: str, params: dict[str, object]) -> int:
    """Run ``sql`` in the store's own thread and connection; the first column of its row."""
    store: SQLiteStore = outbox.store  # type: ignore[assignment]

    def run(conn: object) -> int:
        row = conn.execute(sql, params).fetchone()  # type: ignore[attr-defined]
        return 0 if row is None else int(row[0])

    return await store._call("test", run)


async def test_the_job_page_shows_the_history_escaped(
    outbox: Outbox, client: httpx.AsyncClient
) -> None:
    """Each event a row; an error's HTML is text; a dashboard retry says who."""
    job_id = await outbox.enqueue(None, Stubborn("page", type="stubborn.permanent"))
    assert job_id is not None
    Stubborn.failures_left["page"] = 1
    await run_until_empty(outbox)
    page = await client.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    table = page.text[page.text.index('<table class="history">') :]
    assert table.count('<tr class="event-') == 3  # dead, failed, enqueued
    assert "<b>page</b>" not in page.text
    assert "&lt;b&gt;page&lt;/b&gt; has 1 to go" in table
    assert "<img src=x" not in page.text
    assert "&lt;img src=x onerror=alert(&#39;page&#39;)&gt;" in table
    assert table.index("event-dead") < table.index("event-failed") < table.index("event-enq")
    token = await csrf_token(client, f"/jobs/{job_id}")
    done = await client.post(f"/jobs/{job_id}/retry", data=form(token))
    assert done.status_code == 303
    [retried] = (await history(outbox, job_id))[:1]
    assert (retried.kind, retried.detail) == ("retried", "ops@example.test on the dashboard")
    page = await client.get(f"/jobs/{job_id}")
    assert "ops@example.test on the dashboard" in page.text
    assert "Only the newest" not in page.text


async def test_the_history_of_a_mail_job_holds_no_payload(
    outbox: Outbox, client: httpx.AsyncClient
) -> None:
    from .conftest import Mail

    job_id = await outbox.enqueue(None, Mail("ann@acme.example", code="771234"))
    await run_jobs(outbox)
    page = await client.get(f"/jobs/{job_id}")
    assert "RuntimeError: the relay refused the mail" in page.text
    assert "771234" not in page.text
    job = await outbox.store.job(job_id)  # type: ignore[attr-defined]
    assert job.state is JobState.DEAD


async def test_a_succeeded_job_shows_its_success_from_the_row(
    outbox: Outbox, client: httpx.AsyncClient
) -> None:
    job_id = await outbox.enqueue(None, Stubborn("fine"))
    await run_until_empty(outbox)
    page = await client.get(f"/jobs/{job_id}")
    assert '<tr class="event-succeeded">' in page.text
    assert '<tr class="event-failed">' not in page.text

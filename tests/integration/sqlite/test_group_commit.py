"""Group commit on real SQLite files: enqueues waiting together share one transaction.

To make a batch happen on purpose, another connection holds the file's write
lock: the store's thread takes the first enqueue and waits in ``BEGIN
IMMEDIATE``; what is queued meanwhile goes in the next transaction, together.
A trace of the store's connection shows which statements ran in which
transaction. Triggers make single rows fail the way a real database does.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

import pytest

from apitask.outbox import JobState, Outbox, OutboxError, open_outbox
from apitask.outbox._store import NewJob
from apitask.outbox._store_thread import StoreThread
from apitask.outbox.sqlite import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
    from pathlib import Path

    from apitask import JSONValue

TRIGGERS = """
CREATE TRIGGER refuse BEFORE INSERT ON apitask_jobs WHEN NEW.payload LIKE '%refuse%'
BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END;
CREATE TRIGGER roll_back BEFORE INSERT ON apitask_jobs WHEN NEW.payload LIKE '%roll back%'
BEGIN SELECT RAISE(ROLLBACK, 'rolled back by a trigger'); END;
"""


class Note:
    """A durable task that is only ever stored here, never run."""

    type = "note.add"

    def __init__(self, text: str) -> None:
        self.text = text

    def payload(self) -> Mapping[str, JSONValue]:
        return {"text": self.text}

    async def run(self) -> None:
        raise AssertionError("not run in these tests")


class WriteLock:
    """Another connection holding the file's write lock, from a thread."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    async def __aenter__(self) -> WriteLock:
        await asyncio.to_thread(self.conn.execute, "BEGIN IMMEDIATE")
        return self

    async def release(self) -> None:
        if self.conn.in_transaction:
            await asyncio.to_thread(self.conn.execute, "COMMIT")

    async def __aexit__(self, *exc: object) -> None:
        await self.release()
        await asyncio.to_thread(self.conn.close)


class Trace:
    """The statements the store's connection runs, and when it begins a transaction."""

    def __init__(self, store: SQLiteStore) -> None:
        self.statements: list[str] = []
        self.began = threading.Event()
        assert store._conn is not None
        store._conn.set_trace_callback(self._add)

    def _add(self, sql: str) -> None:
        self.statements.append(sql)
        if sql == "BEGIN IMMEDIATE":
            self.began.set()

    def kinds(self) -> list[str]:
        """The first word of each statement run."""
        # A trigger's program is traced again with its statement's text: once each.
        return [sql.split()[0] for sql, _ in itertools.groupby(self.statements)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
async def outbox(db: Path) -> AsyncIterator[Outbox]:
    async with open_outbox(f"sqlite:///{db}", synchronous="NORMAL") as outbox:
        await outbox.migrate()
        await asyncio.to_thread(add_triggers, db)
        yield outbox


def add_triggers(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.executescript(TRIGGERS)
    conn.close()


def rows(db: Path) -> list[str]:
    """The payload texts committed to the file, read by another connection."""
    conn = sqlite3.connect(db)
    texts = [r[0] for r in conn.execute("SELECT payload ->> 'text' FROM apitask_jobs ORDER BY id")]
    conn.close()
    return texts


def notes(outbox: Outbox, *texts: str) -> list[Coroutine[Any, Any, int | None]]:
    """Enqueues of a Note per text, in the outbox's own transaction (not started yet)."""
    return [outbox.enqueue(None, Note(text)) for text in texts]


async def queued(store: SQLiteStore, count: int) -> None:
    """Wait until ``count`` requests wait in the store thread's queue."""
    assert store._thread is not None
    async with asyncio.timeout(5):
        while store._thread._queue.qsize() < count:  # noqa: ASYNC110 - another thread's queue
            await asyncio.sleep(0.001)


async def batch_behind_a_lock(
    outbox: Outbox, db: Path, first: Coroutine[Any, Any, Any], *rest: Coroutine[Any, Any, Any]
) -> tuple[Trace, list[Any]]:
    """Run ``first`` alone while the lock is held, then ``rest`` as one batch.

    Returns the trace (started once the store is open) and every outcome, in
    order (an exception where one was raised).
    """
    store = outbox.store
    assert isinstance(store, SQLiteStore)
    trace = Trace(store)
    async with WriteLock(db) as lock:
        leader = asyncio.ensure_future(first)
        assert await asyncio.to_thread(trace.began.wait, 5)
        followers = [asyncio.ensure_future(coro) for coro in rest]
        await queued(store, len(followers))
        assert not any(task.done() for task in (leader, *followers))  # nothing committed yet
        await lock.release()
        outcomes = await asyncio.gather(leader, *followers, return_exceptions=True)
    return trace, outcomes


async def test_enqueues_waiting_together_commit_in_one_transaction(
    outbox: Outbox, db: Path
) -> None:
    """A failing row fails alone; a call queued among inserts runs after their batch."""
    work = [*notes(outbox, "first", "second", "refuse me", "third"), outbox.stats()]
    trace, outcomes = await batch_behind_a_lock(outbox, db, *work, *notes(outbox, "fourth"))
    first, second, refused, third, stats, fourth = outcomes
    assert isinstance(refused, OutboxError)
    assert "refused by a trigger" in str(refused)
    assert [first, second, third, fourth] == [1, 2, 3, 4]
    assert stats.total(JobState.QUEUED) == 3  # the batch's rows, committed before
    assert trace.kinds() == [
        *("BEGIN", "INSERT", "COMMIT"),  # first, alone
        *("BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT"),  # the batch, one row refused
        *("BEGIN", "SELECT", "COMMIT"),  # stats, in its turn
        *("BEGIN", "INSERT", "COMMIT"),  # fourth, queued after stats
    ]
    assert await asyncio.to_thread(rows, db) == ["first", "second", "third", "fourth"]


async def test_a_row_that_rolls_the_transaction_back_fails_alone(outbox: Outbox, db: Path) -> None:
    """SQLite undid the whole transaction: the rows before it go again, with the rest."""
    work = notes(outbox, "first", "before", "roll back", "after")
    trace, outcomes = await batch_behind_a_lock(outbox, db, *work)
    first, before, rolled_back, after = outcomes
    assert isinstance(rolled_back, OutboxError)
    assert "rolled back by a trigger" in str(rolled_back)
    assert (first, before, after) == (1, 2, 3)
    assert trace.kinds() == [
        *("BEGIN", "INSERT", "COMMIT"),
        *("BEGIN", "INSERT", "INSERT"),  # "before" lost with the rollback
        *("BEGIN", "INSERT", "INSERT", "COMMIT"),  # "before" again, and "after"
    ]
    assert await asyncio.to_thread(rows, db) == ["first", "before", "after"]


async def test_a_repeated_idempotency_key_inside_one_batch(outbox: Outbox, db: Path) -> None:
    keyed = [("keyed", "k"), ("same key", "k"), ("other key", "k2")]
    work = [outbox.enqueue(None, Note(text), key) for text, key in keyed]
    _, outcomes = await batch_behind_a_lock(outbox, db, *notes(outbox, "first"), *work)
    assert outcomes == [1, 2, None, 3]
    assert await asyncio.to_thread(rows, db) == ["first", "keyed", "other key"]


async def test_a_batch_that_cannot_begin_fails_every_caller(db: Path) -> None:
    # Long enough for the batch to queue up while the first try waits.
    async with Outbox(SQLiteStore(str(db), busy_timeout=1.0)) as outbox:
        await outbox.migrate()
        async with WriteLock(db) as lock:
            store = outbox.store
            assert isinstance(store, SQLiteStore)
            trace = Trace(store)
            leader = asyncio.ensure_future(outbox.enqueue(None, Note("first")))
            assert await asyncio.to_thread(trace.began.wait, 5)
            batch = [asyncio.ensure_future(outbox.enqueue(None, Note(t))) for t in "ab"]
            await queued(store, 2)
            outcomes = await asyncio.gather(leader, *batch, return_exceptions=True)
            await lock.release()
        assert all(isinstance(o, OutboxError) and "locked" in str(o) for o in outcomes)
        # One try alone, one for the batch.
        assert trace.statements == ["BEGIN IMMEDIATE", "BEGIN IMMEDIATE"]
        assert await asyncio.to_thread(rows, db) == []


async def test_a_cancelled_caller_does_not_undo_its_row(outbox: Outbox, db: Path) -> None:
    """As with any call already in the database's hands: the row commits."""
    store = outbox.store
    assert isinstance(store, SQLiteStore)
    trace = Trace(store)
    async with WriteLock(db) as lock:
        cancelled = asyncio.ensure_future(outbox.enqueue(None, Note("cancelled")))
        assert await asyncio.to_thread(trace.began.wait, 5)
        cancelled.cancel()
        await lock.release()
    assert await outbox.enqueue(None, Note("next")) == 2  # answered after the first
    assert cancelled.cancelled()
    assert await asyncio.to_thread(rows, db) == ["cancelled", "next"]


async def test_submit_sync_through_the_store_thread_reports_its_error(outbox: Outbox) -> None:
    with pytest.raises(OutboxError, match="refused by a trigger"):
        await asyncio.to_thread(outbox.sink.submit_sync, Note("refuse me"))
    await asyncio.to_thread(outbox.sink.submit_sync, Note("fine"))
    assert [job.payload for job in await outbox.list()] == ['{"text":"fine"}']


# -- the thread itself ---------------------------------------------------------------


def _broken_batch(items: Sequence[Any]) -> list[tuple[Any, BaseException | None]]:
    raise RuntimeError(f"batch of {len(items)} broke")


async def test_a_failing_batch_function_answers_every_caller() -> None:
    thread = StoreThread(_broken_batch, name="test-store-thread")
    outcomes = await asyncio.gather(thread.submit("a"), thread.submit("b"), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert await thread.call(lambda: "still serving") == "still serving"
    thread.stop()


async def test_a_closed_loop_does_not_stop_the_thread() -> None:
    """A caller's loop closed before the answer: nobody to tell, the thread goes on."""
    thread = StoreThread(list, name="test-store-thread")
    release = threading.Event()

    async def abandon() -> None:
        thread.call(release.wait)  # never awaited: the loop ends first

    def other_loop(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        run(abandon())

    await asyncio.to_thread(other_loop, asyncio.run)
    release.set()
    assert await thread.call(lambda: "still serving") == "still serving"
    thread.stop()


async def test_insert_batch_sees_each_job(db: Path) -> None:
    """Group commit keeps each row's own options (key, delay, request id)."""
    async with Outbox(SQLiteStore(str(db))) as outbox:
        await outbox.migrate()
        store = outbox.store
        assert isinstance(store, SQLiteStore)
        jobs = [
            NewJob("t", '{"n":1}', "key", 60.0, "req-1"),
            NewJob("t", '{"n":2}', None, 0.0, None),
        ]
        assert store._thread is not None
        assert await asyncio.gather(*(store._thread.submit(job) for job in jobs)) == [1, 2]
        listed = {job.id: job for job in await outbox.list()}
        assert (listed[1].idempotency_key, listed[1].request_id) == ("key", "req-1")
        assert listed[1].run_at > listed[2].run_at


async def test_a_stopped_thread_takes_no_more_work(db: Path) -> None:
    """A caller still holding a closed store's thread gets an error, not a wait forever."""
    store = SQLiteStore(str(db))
    async with Outbox(store) as outbox:
        await outbox.migrate()
        thread = store._thread
    assert thread is not None
    job = NewJob("t", "{}")
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        await asyncio.to_thread(thread.submit_sync, job)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        await thread.submit(job)


async def test_a_stop_queued_behind_a_batch_ends_the_thread_after_it() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_first_batch(items: Sequence[Any]) -> list[tuple[Any, BaseException | None]]:
        if not entered.is_set():
            entered.set()
            release.wait(5)
        return [(item, None) for item in items]

    thread = StoreThread(slow_first_batch, name="test-store-thread")
    first = thread.submit(1)
    assert await asyncio.to_thread(entered.wait, 5)
    rest = [thread.submit(2), thread.submit(3)]
    thread.stop()
    release.set()
    assert await asyncio.gather(first, *rest) == [1, 2, 3]
    await asyncio.to_thread(thread._thread.join, 5)
    assert not thread._thread.is_alive()

"""The SQLite outbox store: the embedded default.

One file, WAL mode, a busy timeout, and every database call made in the
store's own thread (never on the event loop): each store operation is one
function run there as one transaction. Claims and other writes start with
``BEGIN IMMEDIATE``, so two processes on one file queue on the write lock
(within the busy timeout) instead of failing on a lock upgrade.

Enqueues in the store's own transaction that wait in the thread's queue
together are committed together (group commit): one ``BEGIN IMMEDIATE`` ...
``COMMIT`` for all of them, each caller answered after that commit. A row
that fails fails alone; the others commit.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._browse import (
    JobFilter,
    StateCounts,
    WorkerLeases,
    search_sql,
    state_counts,
    typed_states,
)
from ._migrate import apply_migrations
from ._records import (
    EVENTS_KEPT,
    Job,
    JobEvent,
    JobState,
    OutboxError,
    SchemaStatus,
    Stats,
    Verdict,
)
from ._sql import load_migrations, load_queries
from ._store import NewJob, as_sqlalchemy, execute_sqlalchemy, translate_errors
from ._store_thread import StoreThread

if TYPE_CHECKING:
    import builtins
    from collections.abc import Awaitable, Callable, Sequence

    from ._records import Finish
    from ._store_thread import ItemResult

__all__ = ["SQLiteStore"]

T = TypeVar("T")
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

_Q = load_queries("sqlite")
_MIGRATIONS = load_migrations("sqlite")
_KNOWN = tuple(migration.version for migration in _MIGRATIONS)


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _job(row: sqlite3.Row) -> Job:
    return Job.from_row(row, _when)


def _log(
    conn: sqlite3.Connection,
    ids: Sequence[int],
    kind: str,
    now: float,
    *,
    worker: str | None = None,
    detail: str | None = None,
) -> None:
    """Add a ``kind`` event to the history of each job of ``ids`` (rows just changed
    in this transaction), and keep only each one's newest :data:`EVENTS_KEPT`."""
    if not ids:
        return
    listed = json.dumps(list(ids))
    event = {"ids": listed, "now": now, "kind": kind, "worker": worker, "detail": detail}
    conn.execute(_Q["log_events"], event)
    conn.execute(_Q["trim_events"], {"ids": listed, "keep": EVENTS_KEPT})


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        # rollback(), not ROLLBACK: a no-op when SQLite already rolled back.
        conn.rollback()
        raise
    conn.execute("COMMIT")
    return result


class SQLiteStore:
    """An outbox in one SQLite file.

    Args:
        path: the database file (created if missing).
        synchronous: SQLite's ``PRAGMA synchronous`` for this store's
            connection. ``FULL`` (default) survives power loss; ``NORMAL``
            in WAL mode survives any process crash (``kill -9``) but may lose
            the last commits on power loss, and is several times faster.
        busy_timeout: seconds a write waits for another writer's lock.
    """

    dialect = "sqlite"

    def __init__(
        self, path: str, *, synchronous: Synchronous = "FULL", busy_timeout: float = 5.0
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        if busy_timeout < 0:
            raise ValueError(f"busy_timeout must be >= 0 seconds, got {busy_timeout!r}")
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._thread: StoreThread | None = None
        self._conn: sqlite3.Connection | None = None
        self._wakers: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    # -- the store's thread -------------------------------------------------

    def _connect(self) -> None:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        self._conn = conn

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the store's connection (in the store's thread)."""
        assert self._conn is not None  # _call opens it first
        return _transaction(self._conn, fn)

    def _write_relaxed(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Like :meth:`_write`, without waiting for the disk (claims, write-backs).

        In WAL mode, ``NORMAL`` commits survive a process crash; only power
        loss can lose one, and then a job runs again (at-least-once), as a
        lost lease would make it. The next durable commit syncs them anyway.
        """
        assert self._conn is not None
        if self.synchronous in ("OFF", "NORMAL"):
            return _transaction(self._conn, fn)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        try:
            return _transaction(self._conn, fn)
        finally:
            self._conn.execute(f"PRAGMA synchronous={self.synchronous}")

    async def _call(
        self, action: str, fn: Callable[[sqlite3.Connection], T], *, durable: bool = False
    ) -> T:
        await self.open()
        assert self._thread is not None
        write = self._write if durable else self._write_relaxed
        with translate_errors(action, sqlite3.Error):
            return await self._thread.call(functools.partial(write, fn))

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        """Open the connection in the store's thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = thread = StoreThread(self._insert_batch, name="apitask-sqlite")
        try:
            with translate_errors(f"open {self.path!r}", sqlite3.Error):
                await thread.call(self._connect)
        except OutboxError:
            thread.stop()
            self._thread = None
            raise

    async def aclose(self) -> None:
        """Close the connection and stop the store's thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        # open() sets the connection whenever it keeps the thread.
        conn, self._conn = self._conn, None
        closing = thread.call(conn.close)  # type: ignore[union-attr]
        thread.stop()
        await closing

    async def migrate(self) -> list[int]:
        """Apply the migrations this file lacks, under one write lock."""

        def apply(conn: sqlite3.Connection) -> list[int]:
            with contextlib.closing(conn.cursor()) as cursor:
                return apply_migrations(cursor, _Q, _MIGRATIONS, record=_Q["record_migration"])

        return await self._call("migrate the outbox schema", apply, durable=True)

    async def schema_status(self) -> SchemaStatus:
        """The migrations this file has and those this release ships (reads only)."""

        def read(conn: sqlite3.Connection) -> SchemaStatus:
            applied: list[int] = []
            if conn.execute(_Q["migrations_table_exists"]).fetchone() is not None:
                applied = sorted(row[0] for row in conn.execute(_Q["applied_migrations"]))
            return SchemaStatus(tuple(applied), _KNOWN)

        return await self._call("read the outbox schema status", read)

    # -- enqueue --------------------------------------------------------------

    @staticmethod
    def _params(job: NewJob) -> dict[str, Any]:
        return {
            "type": job.type,
            "payload": job.payload,
            "idempotency_key": job.idempotency_key,
            "delay": job.delay,
            "request_id": job.request_id,
            "now": time.time(),
        }

    def _insert_now(self, conn: sqlite3.Connection, job: NewJob) -> int | None:
        if job.idempotency_key is None:
            return conn.execute(_Q["insert_unkeyed"], self._params(job)).lastrowid
        row = conn.execute(_Q["insert"], self._params(job)).fetchone()
        return None if row is None else int(row[0])

    def _insert_batch(self, jobs: Sequence[NewJob]) -> list[ItemResult]:
        """Insert ``jobs`` in durable transactions of their own, as few as can be.

        Runs in the store's thread with the jobs that were waiting together.
        A job whose insert fails gets its error and the others commit: an
        ordinary error undoes only its statement; one after which SQLite
        rolled the whole transaction back (``RAISE(ROLLBACK)``, a full disk)
        makes the others go again in a new transaction.
        """
        assert self._conn is not None
        results: list[ItemResult | None] = [None] * len(jobs)
        todo = list(range(len(jobs)))
        while todo:
            todo = self._insert_round(self._conn, jobs, todo, results)
        return results  # type: ignore[return-value]  # every one is set now

    def _insert_round(
        self,
        conn: sqlite3.Connection,
        jobs: Sequence[NewJob],
        todo: list[int],
        results: list[ItemResult | None],
    ) -> list[int]:
        """One transaction for the jobs at ``todo``; return those to try again."""
        inserted: list[tuple[int, int | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for position, index in enumerate(todo):
                try:
                    inserted.append((index, self._insert_now(conn, jobs[index])))
                except Exception as exc:
                    results[index] = (None, exc)
                    if not conn.in_transaction:
                        return [i for i, _ in inserted] + todo[position + 1 :]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # BEGIN failed (busy past the timeout: nothing was inserted) or
            # COMMIT did (none of the inserted rows is in).
            conn.rollback()
            for index in [i for i, _ in inserted] or todo:
                results[index] = (None, exc)
            return []
        for index, job_id in inserted:
            results[index] = (job_id, None)
        return []

    async def insert(self, conn: object | None, job: NewJob) -> int | None:
        """Insert in the caller's transaction on ``conn`` (a SQLAlchemy
        ``AsyncConnection``/``AsyncSession`` or an ``aiosqlite.Connection``),
        or in a transaction of its own when ``conn`` is ``None``."""
        if conn is None:
            await self.open()
            assert self._thread is not None
            with translate_errors("enqueue the job", sqlite3.Error):
                job_id: int | None = await self._thread.submit(job)
            self._wake_all()
            return job_id
        sa = as_sqlalchemy(conn)
        if sa is not None:
            # No notifications in SQLite: this process's workers are woken by the commit.
            return await execute_sqlalchemy(sa, _Q["insert"], self._params(job), self._wake_all)
        return await self._insert_aiosqlite(conn, job)

    async def _insert_aiosqlite(self, conn: Any, job: NewJob) -> int | None:
        module = type(conn).__module__
        if not module.startswith("aiosqlite"):
            raise TypeError(
                "enqueue() needs a SQLAlchemy AsyncConnection or AsyncSession, or an "
                f"aiosqlite.Connection, got {conn!r}"
            )
        with translate_errors("enqueue the job", sqlite3.Error):
            async with conn.execute(_Q["insert"], self._params(job)) as cursor:
                row = await cursor.fetchone()
        return None if row is None else int(row[0])

    def insert_statement(self, job: NewJob) -> tuple[str, dict[str, object]]:
        """The insert for the caller's own connection, ``:name`` style.

        No wake-up goes with it: workers in other processes poll, and a
        worker in this process is woken by its next poll too.
        """
        return _Q["insert"], self._params(job)

    def insert_sync(self, job: NewJob) -> int | None:
        """Insert in a transaction of its own, from a thread with no event loop.

        Uses the store's thread when the store is open, else a one-off
        connection made in the calling thread.
        """
        with translate_errors("enqueue the job", sqlite3.Error):
            if self._thread is not None:
                job_id: int | None = self._thread.submit_sync(job)
                return job_id
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
            try:
                return _transaction(conn, lambda c: self._insert_now(c, job))
            finally:
                conn.close()

    # -- worker side -------------------------------------------------------------

    async def claim(self, worker: str, limit: int, lease: float) -> list[Job]:
        """Lease up to ``limit`` due jobs to ``worker``."""
        params = {"worker": worker, "limit": limit, "lease": lease, "now": time.time()}
        return await self._call(
            "claim jobs", lambda c: [_job(row) for row in c.execute(_Q["claim"], params)]
        )

    async def heartbeat(self, worker: str, ids: Sequence[int], lease: float) -> None:
        """Extend ``worker``'s leases on ``ids``."""
        params = {"worker": worker, "ids": json.dumps(list(ids)), "lease": lease}

        def beat(conn: sqlite3.Connection) -> None:
            conn.execute(_Q["heartbeat"], params | {"now": time.time()})

        await self._call("extend leases", beat)

    async def reap(self, worker: str) -> int:
        """Make jobs with expired leases due again, except ``worker``'s."""

        def reap(conn: sqlite3.Connection) -> int:
            # The time is read in the store's thread, when the reap runs.
            params = {"now": time.time(), "worker": worker}
            # The events first, while the rows still name the worker that lost them.
            if not conn.execute(_Q["reap_events"], params).rowcount:
                return 0
            ids = [row[0] for row in conn.execute(_Q["reap"], params)]
            conn.execute(_Q["trim_events"], {"ids": json.dumps(ids), "keep": EVENTS_KEPT})
            return len(ids)

        return await self._call("take over expired leases", reap)

    async def finish(self, worker: str, outcomes: Sequence[Finish], *, keep: bool) -> None:
        """Write back the outcomes of attempts in one transaction."""
        succeeded = json.dumps([o.job_id for o in outcomes if o.verdict is Verdict.SUCCEEDED])
        released = json.dumps([o.job_id for o in outcomes if o.verdict is Verdict.RELEASED])

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            base = {"worker": worker, "now": now}
            if not keep and succeeded != "[]":
                # Foreign keys are off here: the deleted jobs' events go by hand.
                conn.execute(_Q["succeed_delete_events"], base | {"ids": succeeded})
            conn.execute(_Q["succeed" if keep else "succeed_delete"], base | {"ids": succeeded})
            conn.execute(_Q["release"], base | {"ids": released})
            for o in outcomes:
                if o.verdict is Verdict.RETRY:
                    retry = {"id": o.job_id, "delay": o.delay, "error": o.error}
                    if conn.execute(_Q["schedule_retry"], base | retry).rowcount:
                        _log(conn, [o.job_id], "failed", now, worker=worker, detail=o.error)
                elif o.verdict is Verdict.DEAD:
                    dead = {"id": o.job_id, "error": o.error}
                    if conn.execute(_Q["dead_letter"], base | dead).rowcount:
                        _log(conn, [o.job_id], "dead", now, worker=worker, detail=o.error)

        await self._call("record job outcomes", write)

    def _wake_all(self) -> None:
        for wake in self._wakers:
            wake()

    async def listen(self, wake: Callable[[], None]) -> Callable[[], Awaitable[None]] | None:
        """SQLite has no notifications: wake on this store's own inserts, and on the
        commit of a SQLAlchemy transaction it wrote a job into."""
        self._wakers.append(wake)

        async def close() -> None:
            self._wakers.remove(wake)

        return close

    # -- operations ---------------------------------------------------------------

    async def purge(self, state: JobState, older_than: float) -> int:
        """Delete jobs in ``state`` finished more than ``older_than`` seconds ago."""
        params = {"state": state.value, "age": older_than}

        def purge(conn: sqlite3.Connection) -> int:
            now = {"now": time.time()}  # one instant for both statements
            conn.execute(_Q["purge_events"], params | now)
            return conn.execute(_Q["purge"], params | now).rowcount

        return await self._call("purge jobs", purge)

    async def retry_dead(self, ids: Sequence[int] | None, by: str | None = None) -> int:
        """Queue dead jobs again, with their attempts reset; each gets a ``retried`` event."""
        params = {"all_dead": ids is None, "ids": json.dumps(list(ids or ()))}

        def retry(conn: sqlite3.Connection) -> int:
            now = time.time()
            retried = [row[0] for row in conn.execute(_Q["retry_dead"], params | {"now": now})]
            _log(conn, retried, "retried", now, detail=by)
            return len(retried)

        return await self._call("retry dead jobs", retry)

    async def list(self, state: JobState | None, limit: int) -> list[Job]:
        """The newest ``limit`` jobs, in ``state`` if given (:meth:`search`'s first page)."""
        return await self.search(JobFilter(state=state), None, limit)

    async def stats(self) -> Stats:
        """Counts by type and state."""

        def count(conn: sqlite3.Connection) -> Stats:
            table: dict[str, dict[JobState, int]] = {}
            for row in conn.execute(_Q["stats"]):
                table.setdefault(row["type"], {})[JobState(row["state"])] = row["jobs"]
            return Stats(table)

        return await self._call("count jobs", count)

    # -- browsing (apitask.dashboard) ----------------------------------------------

    async def count_states(self, cap: int, type_cap: int) -> StateCounts:
        """Jobs in each state, counted up to ``cap`` through an index, and by type
        for the states with at most ``type_cap`` jobs."""

        def count(conn: sqlite3.Connection) -> StateCounts:
            counts = dict(conn.execute(_Q["count_states"], {"cap": cap + 1}).fetchone())
            typed = typed_states(counts, type_cap)
            rows = conn.execute(_Q["count_types"], typed) if any(typed.values()) else []
            by_type = [(r["state"], r["type"], r["jobs"]) for r in rows]
            return state_counts(cap, counts, by_type, type_cap=type_cap)

        return await self._call("count jobs", count)

    async def search(self, where: JobFilter, before: int | None, limit: int) -> builtins.list[Job]:
        """One page of jobs matching ``where``, newest first, ids below ``before``."""
        sql, params = search_sql(self.dialect, where, before, limit)
        return await self._call(
            "search jobs", lambda c: [_job(row) for row in c.execute(sql, params)]
        )

    async def job(self, job_id: int) -> Job | None:
        """The job with id ``job_id``, if there is one."""

        def read(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(_Q["job"], {"id": job_id}).fetchone()
            return None if row is None else _job(row)

        return await self._call("read a job", read)

    async def cancel(self, ids: Sequence[int], reason: str) -> int:
        """Move pending (queued or retrying) jobs to dead with ``reason``; return how many."""
        params = {"ids": json.dumps(list(ids)), "reason": reason}

        def cancel(conn: sqlite3.Connection) -> int:
            now = time.time()
            cancelled = [row[0] for row in conn.execute(_Q["cancel"], params | {"now": now})]
            _log(conn, cancelled, "cancelled", now, detail=reason)
            return len(cancelled)

        return await self._call("cancel jobs", cancel)

    async def events(self, job_id: int, limit: int) -> builtins.list[JobEvent]:
        """The newest ``limit`` events of job ``job_id``'s history, newest first."""
        params = {"id": job_id, "limit": limit}
        return await self._call(
            "read a job's history",
            lambda c: [JobEvent.from_row(row, _when) for row in c.execute(_Q["events"], params)],
        )

    async def oldest_due(self) -> datetime | None:
        """When the longest-waiting due job became due, or ``None`` when none waits."""

        def read(conn: sqlite3.Connection) -> datetime | None:
            value = conn.execute(_Q["oldest_due"], {"now": time.time()}).fetchone()["run_at"]
            return None if value is None else _when(value)

        return await self._call("read the queue's age", read)

    async def workers(self) -> builtins.list[WorkerLeases]:
        """The workers holding leases now, with their lease times."""

        def read(conn: sqlite3.Connection) -> builtins.list[WorkerLeases]:
            return [
                WorkerLeases(
                    row["worker"],
                    row["jobs"],
                    _when(row["lease_until"]),
                    _when(row["oldest_lease_until"]),
                )
                for row in conn.execute(_Q["workers"])
            ]

        return await self._call("list workers", read)

"""The PostgreSQL outbox store: many worker processes on many machines.

Claims take a batch of due rows with ``FOR UPDATE SKIP LOCKED`` (workers
never wait on each other's rows) and lease them: a worker extends its leases
by heartbeats, and a lease that runs out (its worker died) is taken over by
the others. Enqueues send a ``NOTIFY``; workers ``LISTEN`` on a dedicated
connection and poll as a fallback. Behind a transaction-mode pooler
(PgBouncer) LISTEN does not work: run workers with ``listen=False`` (they
poll) and pass ``statement_cache_size=0`` in ``connect_kwargs`` unless the
pooler supports prepared statements.
"""

from __future__ import annotations

import asyncio
import functools
import re
from typing import TYPE_CHECKING, Any

import asyncpg

from ._browse import (
    JobFilter,
    StateCounts,
    WorkerLeases,
    search_sql,
    state_counts,
    typed_states,
)
from ._migrate import migration_record, pending_migrations
from ._records import EVENTS_KEPT, Job, JobEvent, JobState, SchemaStatus, Stats, Verdict
from ._sql import load_migrations, load_queries, numbered, pyformat
from ._store import NewJob, as_sqlalchemy, execute_sqlalchemy, translate_errors

if TYPE_CHECKING:
    import builtins
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from datetime import datetime

    import psycopg

    from ._pg_sync import SyncConnections
    from ._records import Finish

__all__ = ["PostgresStore"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# The outbox tables, and the index a DROP INDEX names: CREATE INDEX puts an
# index in its table's schema by itself, but DROP INDEX must be told the schema.
_TABLES = re.compile(r"\bapitask_(jobs|job_events|migrations)\b|(?<=DROP INDEX )apitask_\w+")
_MIGRATIONS = load_migrations("postgres")
_KNOWN = tuple(migration.version for migration in _MIGRATIONS)
_QUERIES = load_queries("postgres")
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


@functools.cache
def _sync_connections_class() -> type[SyncConnections] | None:
    """:class:`SyncConnections`, or ``None`` when psycopg cannot be imported (asked once)."""
    try:
        from ._pg_sync import SyncConnections
    except ImportError:
        return None
    return SyncConnections


def _libpq_options(settings: Mapping[str, object]) -> str | None:
    """asyncpg's ``server_settings`` as libpq's ``options``: ``-c name=value`` each,
    with backslashes and spaces in a value escaped (libpq splits on spaces)."""
    escaped = (
        f"-c {name}=" + str(value).replace("\\", "\\\\").replace(" ", "\\ ")
        for name, value in settings.items()
    )
    return " ".join(escaped) or None


def _as_is(value: datetime) -> datetime:
    return value  # asyncpg reads timestamptz as an aware datetime already


def _job(row: Mapping[str, Any]) -> Job:
    return Job.from_row(row, _as_is)


class _Query:
    """A named query, qualified with the schema and numbered for asyncpg."""

    __slots__ = ("names", "sql")

    def __init__(self, text: str) -> None:
        self.sql, self.names = numbered(text)

    def args(self, params: Mapping[str, object]) -> list[object]:
        return [params[name] for name in self.names]


class PostgresStore:
    """An outbox in a PostgreSQL database.

    Args:
        dsn: ``postgresql://user@host:port/db`` (``postgres://`` too).
        schema: the schema holding the outbox tables (created by
            :meth:`migrate` if missing); ``None`` uses the connection's
            ``search_path``. Enqueues name it explicitly, so the caller's
            connection needs no particular ``search_path``.
        pool_size: connections this store keeps for claims and write-backs.
        connect_kwargs: passed to ``asyncpg.create_pool`` (e.g.
            ``statement_cache_size=0`` behind PgBouncer).
    """

    dialect = "postgresql"

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        pool_size: int = 4,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if schema is not None and not _IDENTIFIER.match(schema):
            raise ValueError(f"schema must be a plain SQL identifier, got {schema!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        self.dsn = dsn
        self.schema = schema
        self.pool_size = pool_size
        self.connect_kwargs = dict(connect_kwargs or {})
        self.channel = "apitask_jobs" if schema is None else f"apitask_jobs.{schema}"
        self._pool: asyncpg.Pool | None = None
        self._insert_pool: asyncpg.Pool | None = None
        self._sync: SyncConnections | None = None
        self._opening = asyncio.Lock()
        self._q = {name: _Query(self.qualify(sql)) for name, sql in _QUERIES.items()}
        self._insert_text = self.qualify(_QUERIES["insert"])
        self._search: dict[str, _Query] = {}

    def __repr__(self) -> str:
        return f"<PostgresStore schema={self.schema!r}>"

    def qualify(self, sql: str) -> str:
        """``sql`` with the outbox tables (and dropped indexes) named in this store's schema."""
        prefix = "" if self.schema is None else f'"{self.schema}".'
        return _TABLES.sub(lambda m: prefix + m[0], sql)

    # -- lifecycle ------------------------------------------------------------

    async def _create_pool(self, size: int, durable: bool) -> asyncpg.Pool:
        kwargs = dict(self.connect_kwargs)
        settings = dict(kwargs.pop("server_settings", {}))
        if not durable:
            # Claims, heartbeats and write-backs need not wait for the WAL
            # flush: if the server crashes and loses one, the job runs again
            # (at-least-once), which a lost lease would cause anyway.
            settings["synchronous_commit"] = "off"
        with translate_errors("connect to PostgreSQL", *_DRIVER_ERRORS):
            return await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=size,
                server_settings=settings,
                # Our statements leave no session state behind: skip the
                # per-release RESET round trip.
                reset=_keep_session,
                **kwargs,
            )

    async def open(self) -> None:
        """Create the connection pool (idempotent)."""
        async with self._opening:  # one pool, however many callers race here
            self._pool = self._pool or await self._create_pool(self.pool_size, durable=False)

    async def aclose(self) -> None:
        """Close the pools, and the connections kept for sync enqueues."""
        for pool in (self._pool, self._insert_pool):
            if pool is not None:
                await pool.close()
        self._pool = self._insert_pool = None
        if self._sync is not None:
            await asyncio.to_thread(self._sync.close)  # closing a connection does I/O

    async def _pool_ready(self) -> asyncpg.Pool:
        await self.open()
        assert self._pool is not None
        return self._pool

    async def _fetch(self, action: str, name: str, **params: object) -> list[Any]:
        pool = await self._pool_ready()
        query = self._q[name]
        with translate_errors(action, *_DRIVER_ERRORS):
            return list(await pool.fetch(query.sql, *query.args(params)))

    async def _execute(self, action: str, name: str, **params: object) -> int:
        pool = await self._pool_ready()
        query = self._q[name]
        with translate_errors(action, *_DRIVER_ERRORS):
            status = await pool.execute(query.sql, *query.args(params))
        return int(status.rsplit(" ", 1)[-1])

    async def migrate(self) -> list[int]:
        """Apply pending migrations in one transaction, one migrator at a time."""
        pool = await self._pool_ready()
        applied = []
        with translate_errors("migrate the outbox schema", *_DRIVER_ERRORS):
            async with pool.acquire() as conn, conn.transaction():
                lock = self._q["migrations_lock"]
                await conn.execute(lock.sql, *lock.args({"lock_name": self.channel}))
                if self.schema is not None:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.execute(self._q["migrations_table"].sql)
                done = {r[0] for r in await conn.fetch(self._q["applied_migrations"].sql)}
                record = self._q["record_migration"]
                for migration in pending_migrations(_MIGRATIONS, done):
                    for statement in migration.statements:
                        await conn.execute(self.qualify(statement))
                    await conn.execute(record.sql, *record.args(migration_record(migration)))
                    applied.append(migration.version)
        return applied

    async def schema_status(self) -> SchemaStatus:
        """The migrations this schema has and those this release ships (reads only)."""
        pool = await self._pool_ready()
        with translate_errors("read the outbox schema status", *_DRIVER_ERRORS):
            async with pool.acquire() as conn:
                exists = await conn.fetchval(self._q["migrations_table_exists"].sql)
                rows = await conn.fetch(self._q["applied_migrations"].sql) if exists else []
        return SchemaStatus(tuple(sorted(row[0] for row in rows)), _KNOWN)

    # -- enqueue --------------------------------------------------------------

    def _params(self, job: NewJob) -> dict[str, object]:
        return {
            "type": job.type,
            "payload": job.payload,
            "idempotency_key": job.idempotency_key,
            "delay": float(job.delay),
            "request_id": job.request_id,
            "channel": self.channel,
        }

    async def insert(self, conn: object | None, job: NewJob) -> int | None:
        """Insert in the caller's transaction on ``conn`` (a SQLAlchemy
        ``AsyncConnection``/``AsyncSession`` or an ``asyncpg.Connection``), or
        in a transaction of its own when ``conn`` is ``None``."""
        params = self._params(job)
        query = self._q["insert"]
        if conn is None:
            # The job must be durable once this returns: a pool that waits for
            # the WAL flush (created on first use).
            async with self._opening:
                self._insert_pool = self._insert_pool or await self._create_pool(2, durable=True)
            with translate_errors("enqueue the job", *_DRIVER_ERRORS):
                row = await self._insert_pool.fetchrow(query.sql, *query.args(params))
            return None if row is None else int(row["id"])
        sa = as_sqlalchemy(conn)
        if sa is not None:
            return await execute_sqlalchemy(sa, query.sql, tuple(query.args(params)))
        if not isinstance(conn, asyncpg.Connection):
            raise TypeError(
                "enqueue() needs a SQLAlchemy AsyncConnection or AsyncSession, or an "
                f"asyncpg.Connection, got {conn!r}"
            )
        with translate_errors("enqueue the job", *_DRIVER_ERRORS):
            row = await conn.fetchrow(query.sql, *query.args(params))
        return None if row is None else int(row["id"])

    def insert_statement(self, job: NewJob) -> tuple[str, dict[str, object]]:
        """The insert (and its NOTIFY) for the caller's own connection, ``:name`` style."""
        return self._insert_text, self._params(job)

    def insert_sync(self, job: NewJob) -> int | None:
        """Insert in a transaction of its own, from a thread with no running loop.

        With psycopg 3 installed, over a few connections kept open and reused
        (:class:`~apitask.outbox._pg_sync.SyncConnections`, at most
        ``pool_size`` idle, closed by :meth:`aclose`); without it, over a
        one-off asyncpg connection, several times slower.
        """
        sync = self._sync_connections()
        if sync is None:
            return self._insert_one_off(job)
        with translate_errors("enqueue the job", sync.errors):
            rows = sync.fetch(pyformat(self._insert_text), self._params(job))
        return int(rows[0][0]) if rows else None

    def _sync_connections(self) -> SyncConnections | None:
        """The reused psycopg connections (made on first use), or ``None`` without psycopg."""
        if self._sync is None:
            kind = _sync_connections_class()
            if kind is None:
                return None
            self._sync = kind(self._connect_sync, keep=self.pool_size)
        return self._sync

    def _connect_sync(self) -> psycopg.Connection[Any]:
        import psycopg

        # What connect_kwargs says for asyncpg that psycopg has too: the connect
        # timeout, the server settings (application_name...), and no prepared
        # statements (behind PgBouncer in transaction mode).
        kwargs = self.connect_kwargs
        settings = dict(kwargs.get("server_settings", {}))
        return psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=int(kwargs.get("timeout", 60)),
            prepare_threshold=None if kwargs.get("statement_cache_size") == 0 else 5,
            options=_libpq_options(settings),
        )

    def _insert_one_off(self, job: NewJob) -> int | None:
        """Insert in a transaction of its own over a one-off asyncpg connection."""
        query = self._q["insert"]
        args = query.args(self._params(job))

        async def once() -> int | None:
            with translate_errors("enqueue the job", *_DRIVER_ERRORS):
                conn = await asyncpg.connect(self.dsn, **self.connect_kwargs)
                try:
                    row = await conn.fetchrow(query.sql, *args)
                finally:
                    await conn.close()
            return None if row is None else int(row["id"])

        return asyncio.run(once())

    # -- worker side -------------------------------------------------------------

    async def claim(self, worker: str, limit: int, lease: float) -> list[Job]:
        """Lease up to ``limit`` due jobs to ``worker`` (``SKIP LOCKED``)."""
        rows = await self._fetch(
            "claim jobs", "claim", worker=worker, limit=limit, lease=float(lease)
        )
        return [_job(row) for row in rows]

    async def heartbeat(self, worker: str, ids: Sequence[int], lease: float) -> None:
        """Extend ``worker``'s leases on ``ids``."""
        await self._execute(
            "extend leases", "heartbeat", worker=worker, ids=list(ids), lease=float(lease)
        )

    async def reap(self, worker: str) -> int:
        """Make jobs with expired leases due again, except ``worker``'s."""
        rows = await self._fetch(
            "take over expired leases", "reap", worker=worker, keep=EVENTS_KEPT
        )
        return len(rows)

    async def finish(self, worker: str, outcomes: Sequence[Finish], *, keep: bool) -> None:
        """Write back the outcomes of attempts in one transaction."""
        succeeded = [o.job_id for o in outcomes if o.verdict is Verdict.SUCCEEDED]
        released = [o.job_id for o in outcomes if o.verdict is Verdict.RELEASED]
        retry = self._q["schedule_retry"]
        failed = {"worker": worker, "keep": EVENTS_KEPT}
        retries = [
            retry.args(failed | {"id": o.job_id, "delay": o.delay, "error": o.error})
            for o in outcomes
            if o.verdict is Verdict.RETRY
        ]
        dead_letter = self._q["dead_letter"]
        dead = [
            dead_letter.args(failed | {"id": o.job_id, "error": o.error})
            for o in outcomes
            if o.verdict is Verdict.DEAD
        ]
        pool = await self._pool_ready()
        with translate_errors("record job outcomes", *_DRIVER_ERRORS):
            async with pool.acquire() as conn, conn.transaction():
                # Only the statements with rows: each one is a round trip.
                if succeeded:
                    done = self._q["succeed" if keep else "succeed_delete"]
                    await conn.execute(done.sql, *done.args({"ids": succeeded, "worker": worker}))
                if released:
                    back = self._q["release"]
                    await conn.execute(back.sql, *back.args({"ids": released, "worker": worker}))
                if retries:
                    await conn.executemany(retry.sql, retries)
                if dead:
                    await conn.executemany(dead_letter.sql, dead)

    async def listen(self, wake: Callable[[], None]) -> Callable[[], Awaitable[None]] | None:
        """``LISTEN`` on a dedicated connection; call ``wake`` on each notification."""
        with translate_errors("listen for new jobs", *_DRIVER_ERRORS):
            conn = await asyncpg.connect(self.dsn, **self.connect_kwargs)
            await conn.add_listener(self.channel, lambda *_: wake())

        async def close() -> None:
            await conn.close()

        return close

    # -- operations ---------------------------------------------------------------

    async def purge(self, state: JobState, older_than: float) -> int:
        """Delete jobs in ``state`` finished more than ``older_than`` seconds ago."""
        return await self._execute("purge jobs", "purge", state=state.value, age=float(older_than))

    async def retry_dead(self, ids: Sequence[int] | None, by: str | None = None) -> int:
        """Queue dead jobs again, with their attempts reset; each gets a ``retried`` event."""
        rows = await self._fetch(
            "retry dead jobs",
            "retry_dead",
            all_dead=ids is None,
            ids=list(ids or ()),
            by=by,
            keep=EVENTS_KEPT,
        )
        jobs: int = rows[0]["jobs"]
        return jobs

    async def list(self, state: JobState | None, limit: int) -> list[Job]:
        """The newest ``limit`` jobs, in ``state`` if given (:meth:`search`'s first page)."""
        return await self.search(JobFilter(state=state), None, limit)

    async def stats(self) -> Stats:
        """Counts by type and state."""
        table: dict[str, dict[JobState, int]] = {}
        for row in await self._fetch("count jobs", "stats"):
            table.setdefault(row["type"], {})[JobState(row["state"])] = row["jobs"]
        return Stats(table)

    # -- browsing (apitask.dashboard) ----------------------------------------------

    async def count_states(self, cap: int, type_cap: int) -> StateCounts:
        """Jobs in each state, counted up to ``cap`` through an index, and by type
        for the states with at most ``type_cap`` jobs; a capped state's estimate
        from the planner's statistics."""
        counts = dict((await self._fetch("count jobs", "count_states", cap=cap + 1))[0])
        typed = typed_states(counts, type_cap)
        rows = (
            await self._fetch("count jobs", "count_types", **typed) if any(typed.values()) else []
        )
        estimates: dict[str, int] = {}
        if not all(jobs <= cap for jobs in counts.values()):  # the catalog, only when needed
            stats = (await self._fetch("read the table's statistics", "state_estimates"))[0]
            if stats["states"] is not None and stats["total"] > 0:
                estimates = {
                    state: round(stats["total"] * share)
                    for state, share in zip(stats["states"], stats["shares"], strict=True)
                }
        by_type = [(r["state"], r["type"], r["jobs"]) for r in rows]
        return state_counts(cap, counts, by_type, estimates, type_cap)

    async def search(self, where: JobFilter, before: int | None, limit: int) -> builtins.list[Job]:
        """One page of jobs matching ``where``, newest first, ids below ``before``."""
        sql, params = search_sql(self.dialect, where, before, limit)
        query = self._search.get(sql)
        if query is None:  # one per combination of filters: at most 32
            query = self._search[sql] = _Query(self.qualify(sql))
        pool = await self._pool_ready()
        with translate_errors("search jobs", *_DRIVER_ERRORS):
            rows = await pool.fetch(query.sql, *query.args(params))
        return [_job(row) for row in rows]

    async def job(self, job_id: int) -> Job | None:
        """The job with id ``job_id``, if there is one."""
        rows = await self._fetch("read a job", "job", id=job_id)
        return _job(rows[0]) if rows else None

    async def cancel(self, ids: Sequence[int], reason: str) -> int:
        """Move pending (queued or retrying) jobs to dead with ``reason``; return how many."""
        rows = await self._fetch(
            "cancel jobs", "cancel", ids=list(ids), reason=reason, keep=EVENTS_KEPT
        )
        jobs: int = rows[0]["jobs"]
        return jobs

    async def events(self, job_id: int, limit: int) -> builtins.list[JobEvent]:
        """The newest ``limit`` events of job ``job_id``'s history, newest first."""
        rows = await self._fetch("read a job's history", "events", id=job_id, limit=limit)
        return [JobEvent.from_row(row, _as_is) for row in rows]

    async def oldest_due(self) -> datetime | None:
        """When the longest-waiting due job became due, or ``None`` when none waits."""
        rows = await self._fetch("read the queue's age", "oldest_due")
        value: datetime | None = rows[0]["run_at"]
        return value

    async def workers(self) -> builtins.list[WorkerLeases]:
        """The workers holding leases now, with their lease times."""
        rows = await self._fetch("list workers", "workers")
        return [
            WorkerLeases(r["worker"], r["jobs"], r["lease_until"], r["oldest_lease_until"])
            for r in rows
        ]


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool ``reset`` hook that resets nothing (see ``_create_pool``)."""

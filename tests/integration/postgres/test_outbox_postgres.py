"""The outbox on a real PostgreSQL: transactions, LISTEN, leases, many worker processes.

Every test works in a schema of its own (random name), dropped afterwards:
other suites share this server.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import apitask
from apitask import TransientError
from apitask.__main__ import main
from apitask.outbox import Job, JobState, NewJob, Outbox, OutboxError, TaskRegistry
from apitask.outbox._sql import load_migrations, load_schema
from apitask.outbox.postgres import PostgresStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from sqlalchemy.ext.asyncio import AsyncEngine

    from apitask import JSONValue

TASKS_DIR = str(Path(__file__).resolve().parent.parent)  # outbox_tasks.py
if TASKS_DIR not in sys.path:
    sys.path.insert(0, TASKS_DIR)
Record = importlib.import_module("outbox_tasks").Record

pytestmark = pytest.mark.postgres
DECLARED_SCHEMA = load_schema("postgres")  # read at import, not on the loop
KNOWN_MIGRATIONS = tuple(migration.version for migration in load_migrations("postgres"))
VERSION_2 = load_migrations("postgres")[:2]
OLD_STATES = ("queued", "running", "succeeded", "failed", "dead")  # before migration 3


class Ping:
    """A durable task that sets an event (in-process tests)."""

    events: dict[str, asyncio.Event] = {}  # noqa: RUF012 - rebuilt tasks find their event here
    failures_left: dict[str, int] = {}  # noqa: RUF012

    def __init__(self, name: str, type: str = "ping") -> None:
        self.type = type
        self.name = name

    def payload(self) -> Mapping[str, JSONValue]:
        return {"name": self.name}

    async def run(self) -> None:
        left = Ping.failures_left.get(self.name, 0)
        if left:
            Ping.failures_left[self.name] = left - 1
            raise TransientError("later", retry_after=0.0)
        if self.name == "boom":
            raise LookupError("poison")
        if self.name == "hang":
            Ping.event("hang-started").set()
            await asyncio.Event().wait()
        Ping.event(self.name).set()

    @staticmethod
    def event(name: str) -> asyncio.Event:
        return Ping.events.setdefault(name, asyncio.Event())


@pytest.fixture(autouse=True)
def _fresh_pings() -> None:
    Ping.events = {}
    Ping.failures_left = {}


@pytest.fixture
def registry() -> TaskRegistry:
    registry = TaskRegistry()
    registry.register("ping", lambda type, payload: Ping(str(payload["name"])))
    return registry


@pytest.fixture
def schema() -> str:
    return f"apitask_outbox_test_{secrets.token_hex(4)}"


@pytest.fixture
async def outbox(postgres_url: str, schema: str, registry: TaskRegistry) -> AsyncIterator[Outbox]:
    async with Outbox(PostgresStore(postgres_url, schema=schema), registry) as outbox:
        try:
            assert await outbox.migrate() == list(KNOWN_MIGRATIONS)
            yield outbox
        finally:
            admin = await asyncpg.connect(postgres_url)
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(postgres_url.replace("postgresql://", "postgresql+asyncpg://"))
    yield engine
    await engine.dispose()


async def payloads(outbox: Outbox) -> list[str]:
    return sorted(job.payload for job in await outbox.list(limit=100_000))


async def test_commit_publishes_and_rollback_drops(outbox: Outbox, engine: AsyncEngine) -> None:
    """SQLAlchemy connection and session: the job exists iff the caller's transaction commits."""
    async with engine.begin() as conn:
        await outbox.enqueue(conn, Ping("kept"))
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await outbox.enqueue(conn, Ping("dropped"))
            raise RuntimeError("the business transaction fails")
    async with AsyncSession(engine) as session:
        await outbox.enqueue(session, Ping("rolled back"))
        await session.rollback()
        await outbox.enqueue(session, Ping("committed"))
        await session.commit()
    assert await payloads(outbox) == ['{"name":"committed"}', '{"name":"kept"}']


async def test_plain_asyncpg_connection_and_idempotency(outbox: Outbox, postgres_url: str) -> None:
    """An asyncpg connection works too; a repeated idempotency key is a no-op."""
    conn = await asyncpg.connect(postgres_url)
    try:
        async with conn.transaction():
            assert await outbox.enqueue(conn, Ping("a"), "key-1") is not None
            assert await outbox.enqueue(conn, Ping("b"), "key-1") is None
        tx = conn.transaction()
        await tx.start()
        await outbox.enqueue(conn, Ping("rolled back"))
        await tx.rollback()
        tx = conn.transaction()
        await tx.start()
        with pytest.raises(asyncpg.DivisionByZeroError):
            await conn.execute("SELECT 1/0")
        with pytest.raises(OutboxError, match="could not enqueue"):
            await outbox.enqueue(conn, Ping("into a failed transaction"))
        await tx.rollback()
    finally:
        await conn.close()
    assert await outbox.enqueue(None, Ping("c"), "key-1") is None
    assert await payloads(outbox) == ['{"name":"a"}']
    with pytest.raises(TypeError, match=r"asyncpg\.Connection"):
        await outbox.enqueue(object(), Ping("x"))


async def test_caller_errors_are_outbox_errors(outbox: Outbox, engine: AsyncEngine) -> None:
    """An enqueue into a failed transaction raises OutboxError with the cause chained."""
    async with engine.connect() as conn:
        await conn.begin()
        await conn.exec_driver_sql("SAVEPOINT s")
        with pytest.raises(Exception, match="division by zero"):
            await conn.exec_driver_sql("SELECT 1/0")
        with pytest.raises(OutboxError, match="could not enqueue") as caught:
            await outbox.enqueue(conn, Ping("x"))
        assert caught.value.__cause__ is not None
        await conn.rollback()


async def test_run_in_a_declared_transaction(outbox: Outbox, engine: AsyncEngine) -> None:
    """apitask.run inside outbox.transaction() joins it; the pool's spill path
    (no transaction declared) and WSGI's submit_sync write on their own."""
    with pytest.raises(RuntimeError):
        async with AsyncSession(engine) as session, session.begin():
            async with outbox.transaction(session):
                await apitask.run(Ping("rolled back"))
            raise RuntimeError("abort")
    async with AsyncSession(engine) as session, session.begin(), outbox.transaction(session):
        await apitask.run(Ping("committed"))
    await outbox.sink.submit(Ping("spilled"))
    await asyncio.to_thread(outbox.sink.submit_sync, Ping("from a thread"))
    assert await payloads(outbox) == [
        '{"name":"committed"}', '{"name":"from a thread"}', '{"name":"spilled"}',
    ]  # fmt: skip


async def test_jobs_keep_the_id_of_the_request_that_enqueued_them(
    outbox: Outbox, engine: AsyncEngine
) -> None:
    """The request id is written with the job (caller's transaction or the sink's
    own) and comes back in listings and claims; outside a request it is NULL."""
    async with apitask.scope(request_id="req-pg", sink=outbox.sink):
        async with engine.begin() as conn:
            await outbox.enqueue(conn, Ping("in a transaction"))
        await apitask.run(Ping("through the sink"))
    await outbox.enqueue(None, Ping("outside"))
    listed = {job.payload: job.request_id for job in await outbox.list()}
    claimed = {job.payload: job.request_id for job in await outbox.store.claim("w", 10, 30.0)}
    expected = {
        '{"name":"in a transaction"}': "req-pg",
        '{"name":"through the sink"}': "req-pg",
        '{"name":"outside"}': None,
    }
    assert listed == claimed == expected


async def test_listen_wakes_an_idle_worker(outbox: Outbox) -> None:
    """With a one-minute poll interval, a NOTIFY is what gets the job run at once."""
    idle = asyncio.Event()
    store = outbox.store
    claim = store.claim

    async def claim_and_report(worker: str, limit: int, lease: float) -> list[Job]:
        jobs = await claim(worker, limit, lease)
        if not jobs:
            idle.set()
        return jobs

    store.claim = claim_and_report  # type: ignore[method-assign]
    async with outbox.worker(poll_interval=60.0):
        await idle.wait()
        await outbox.enqueue(None, Ping("woken"))
        async with asyncio.timeout(10):
            await Ping.event("woken").wait()


async def test_worker_retries_dead_letters_heartbeats_and_releases(
    outbox: Outbox, postgres_url: str, schema: str
) -> None:
    """Poison goes dead while the rest flow; a transient failure is retried; a long
    job keeps its lease by heartbeats and is released (not lost) at shutdown."""
    Ping.failures_left["flaky"] = 1
    ids: dict[str, int] = {}
    for name in ("a", "b", "boom", "flaky", "hang"):
        job_id = await outbox.enqueue(None, Ping(name))
        assert job_id is not None
        ids[name] = job_id
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(
            f'INSERT INTO "{schema}".apitask_jobs (type, payload) '
            "VALUES ('ping', 'not json'), ('unknown', '{}')"
        )
        worker = outbox.worker(lease=0.3, poll_interval=0.05, shutdown_timeout=0.0)
        async with worker:
            for name in ("a", "b", "flaky", "hang-started"):
                await Ping.event(name).wait()
            before = await conn.fetchval(
                f"SELECT locked_until FROM \"{schema}\".apitask_jobs WHERE payload LIKE '%hang%'"
            )
            while (  # noqa: ASYNC110 - watching another connection's writes
                await conn.fetchval(
                    f'SELECT locked_until FROM "{schema}".apitask_jobs '
                    "WHERE payload LIKE '%hang%'"
                )
                == before
            ):
                await asyncio.sleep(0.05)
    finally:
        await conn.close()
    listed = await outbox.list()
    jobs = {job.id: job for job in listed}
    by_type = {job.type: job for job in listed if job.type != "ping" or job.payload == "not json"}
    assert jobs[ids["hang"]].state is JobState.QUEUED  # released at shutdown
    assert jobs[ids["hang"]].attempts == 0
    assert jobs[ids["hang"]].payload == '{"name":"hang"}'  # kept: it runs again
    assert jobs[ids["boom"]].state is JobState.DEAD
    assert jobs[ids["boom"]].last_error == "LookupError: poison"
    assert jobs[ids["boom"]].payload == '{"name":"boom"}'  # kept: `outbox retry` reruns it
    assert jobs[ids["flaky"]].state is JobState.SUCCEEDED
    assert jobs[ids["flaky"]].attempts == 2
    assert jobs[ids["flaky"]].last_error == "TransientError: later"  # metadata kept
    # Succeeded: the payload (a mail's address and code) is erased, the metadata kept.
    assert {jobs[ids[name]].payload for name in ("a", "b", "flaky")} == {"{}"}
    assert str(by_type["ping"].last_error).startswith("undecodable payload")
    assert by_type["unknown"].last_error == "no task factory registered for type 'unknown'"
    stats = await outbox.stats()
    assert stats.total(JobState.SUCCEEDED) == 3
    assert stats.total(JobState.DEAD) == 3
    assert await outbox.retry() == 3
    assert await outbox.purge(JobState.SUCCEEDED, older_than=3600) == 0
    assert await outbox.purge(JobState.SUCCEEDED) == 3


async def test_retention_zero_deletes_and_expired_leases_are_reaped(outbox: Outbox) -> None:
    """A ghost worker's expired lease is taken over; retention 0 deletes on success."""
    await outbox.enqueue(None, Ping("orphan"))
    [claimed] = await outbox.store.claim("ghost", 1, lease=-1.0)
    assert claimed.attempts == 1
    async with outbox.worker(poll_interval=0.05, lease=0.2, retention=0.0, listen=False):
        await Ping.event("orphan").wait()
    assert await outbox.list() == []


async def test_a_worker_does_not_reap_its_own_leases(outbox: Outbox) -> None:
    """An expired lease is taken over by any worker but the one holding it."""
    await outbox.enqueue(None, Ping("mine"))
    [claimed] = await outbox.store.claim("slow-writer", 1, lease=-1.0)
    assert await outbox.store.reap("slow-writer") == 0
    assert (await outbox.list())[0].state is JobState.RUNNING
    assert await outbox.store.reap("another") == 1
    [job] = await outbox.list()
    assert (job.id, job.state) == (claimed.id, JobState.RETRYING)


async def test_migrated_schema_equals_declared_schema(
    outbox: Outbox, postgres_url: str, schema: str
) -> None:
    """Migrations give exactly the schema schema.sql declares (columns, defaults,
    constraints, indexes); migrating again is a no-op."""
    assert await outbox.migrate() == []
    declared = f"{schema}_declared"
    store = PostgresStore(postgres_url, schema=declared)
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{declared}"')
        for statement in DECLARED_SCHEMA:
            await conn.execute(store.qualify(statement))

        async def describe(name: str) -> object:
            columns = await conn.fetch(
                "SELECT column_name, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = $1 "
                "AND table_name = 'apitask_jobs' ORDER BY ordinal_position",
                name,
            )
            indexes = await conn.fetch(
                "SELECT indexname, replace(indexdef, $1, 'S') FROM pg_indexes "
                "WHERE schemaname = $2 AND tablename = 'apitask_jobs' ORDER BY indexname",
                f'"{name}"' if name != name.lower() else name,
                name,
            )
            constraints = await conn.fetch(
                "SELECT conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "JOIN pg_namespace n ON n.oid = c.connamespace "
                "JOIN pg_class t ON t.oid = c.conrelid "
                "WHERE n.nspname = $1 AND t.relname = 'apitask_jobs' ORDER BY conname",
                name,
            )
            defaults = [(c[0], c[1], c[2], (c[3] or "").replace(name, "S")) for c in columns]
            return defaults, [tuple(i) for i in indexes], [tuple(c) for c in constraints]

        migrated, wanted = await describe(schema), await describe(declared)
        assert migrated == wanted
        assert migrated[0]  # type: ignore[index]
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{declared}" CASCADE')
        await conn.close()


async def test_migration_3_renames_failed_jobs_retrying(
    postgres_url: str, schema: str, registry: TaskRegistry
) -> None:
    """A version-2 schema with a job in every old state: migration 3 rewrites "failed"
    to "retrying" (other states untouched), the constraint refuses the old name, and a
    worker claims the retrying job through the rebuilt claim index."""
    store = PostgresStore(postgres_url, schema=schema)
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        await admin.execute(store.qualify(
            "CREATE TABLE apitask_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        ))  # fmt: skip
        for migration in VERSION_2:
            for statement in migration.statements:
                await admin.execute(store.qualify(statement))
            await admin.execute(
                store.qualify("INSERT INTO apitask_migrations (version, name) VALUES ($1, $2)"),
                migration.version,
                migration.name,
            )
        for id, state in enumerate(OLD_STATES, start=10):
            await admin.execute(
                store.qualify(
                    "INSERT INTO apitask_jobs (id, type, payload, state, attempts, last_error) "
                    "VALUES ($1, 'ping', $2, $3, 1, $4)"
                ),
                id,
                json.dumps({"name": state}),
                state,
                f"was {state}",
            )
        async with Outbox(store, registry) as outbox:
            assert await outbox.migrate() == [3, 4, 5]
            jobs = {job.id: job for job in await outbox.list()}
            assert {id: job.state.value for id, job in jobs.items()} == {
                10: "queued", 11: "running", 12: "succeeded", 13: "retrying", 14: "dead",
            }  # fmt: skip
            assert (jobs[13].payload, jobs[13].last_error) == ('{"name": "failed"}', "was failed")
            with pytest.raises(asyncpg.CheckViolationError):
                await admin.execute(
                    store.qualify("UPDATE apitask_jobs SET state = 'failed' WHERE id = 13")
                )
            indexdef = await admin.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 "
                "AND indexname = 'apitask_jobs_ready'",
                schema,
            )
            assert "'retrying'" in indexdef and "'failed'" not in indexdef
            await outbox.worker(poll_interval=0.01, listen=False).run(until_empty=True)
            assert Ping.event("failed").is_set() and Ping.event("queued").is_set()
            assert not Ping.event("dead").is_set()
            assert await outbox.migrate() == []
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


async def test_schema_status_reads_how_far_the_schema_is_migrated(
    postgres_url: str, schema: str
) -> None:
    """In the store's schema or on the search_path: none applied before a migration (and
    the read creates nothing), all after it, one pending once its record is removed."""
    known = KNOWN_MIGRATIONS
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    on_path = {"server_settings": {"search_path": schema}}
    stores = [
        PostgresStore(postgres_url, schema=schema),
        PostgresStore(postgres_url, connect_kwargs=on_path),
    ]
    migrations_table = f'"{schema}".apitask_migrations'
    try:
        for store in stores:
            status = await store.schema_status()
            assert (status.applied, status.known, status.pending) == ((), known, known)
            assert await admin.fetchval("SELECT to_regclass($1)", migrations_table) is None
        await stores[0].migrate()
        for store in stores:
            status = await store.schema_status()
            assert (status.applied, status.pending) == (known, ())
        await admin.execute(f"DELETE FROM {migrations_table} WHERE version = {known[-1]}")
        for store in stores:
            status = await store.schema_status()
            assert (status.pending, status.current, status.latest) == (known[-1:], *known[-2:])
    finally:
        for store in stores:
            await store.aclose()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def test_without_a_schema_the_search_path_decides(postgres_url: str, schema: str) -> None:
    """schema=None leaves table names unqualified: the connection's search_path picks them."""
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    store = PostgresStore(postgres_url, connect_kwargs={"server_settings": {"search_path": schema}})
    try:
        await asyncio.gather(store.open(), store.open())  # concurrent opens share one pool
        assert await store.migrate() == list(KNOWN_MIGRATIONS)
        ids = await asyncio.gather(*(store.insert(None, NewJob("ping", "{}")) for _ in range(2)))
        assert sorted(ids) == [1, 2]  # type: ignore[type-var]
        assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".apitask_jobs') == 2
    finally:
        await store.aclose()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def test_store_errors_and_settings(postgres_url: str) -> None:
    """Unreachable servers raise OutboxError; bad settings raise ValueError naming them."""
    down = PostgresStore("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(OutboxError, match="could not connect"):
        await down.open()
    with pytest.raises(OutboxError, match="could not listen"):
        await down.listen(lambda: None)
    await down.aclose()
    with pytest.raises(ValueError, match="schema"):
        PostgresStore(postgres_url, schema="x; DROP TABLE y")
    with pytest.raises(ValueError, match="pool_size"):
        PostgresStore(postgres_url, pool_size=0)
    assert "schema=None" in repr(PostgresStore(postgres_url))


# -- many processes ---------------------------------------------------------------------


def worker_env(postgres_url: str, schema: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TASKS_DIR, env.get("PYTHONPATH", "")])
    env |= {"OUTBOX_TEST_PG_DSN": postgres_url, "OUTBOX_TEST_PG_SCHEMA": schema, **extra}
    return env


async def start_worker(
    postgres_url: str, schema: str, *args: str, **env: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apitask", "worker", "--app", "outbox_tasks:registry",
        "--url", postgres_url, "--schema", schema, *args,
        env=worker_env(postgres_url, schema, **env),
    )  # fmt: skip


async def fill(conn: asyncpg.Connection, schema: str, type: str, n: int) -> None:
    await conn.execute(
        f'CREATE TABLE "{schema}".runs (n integer PRIMARY KEY, pid integer NOT NULL);'
        f'CREATE TABLE "{schema}".started (n integer NOT NULL, pid integer NOT NULL)'
    )
    await conn.execute(
        f'INSERT INTO "{schema}".apitask_jobs (type, payload) '
        "SELECT $1, json_build_object('n', g)::text FROM generate_series(1, $2) AS g",
        type,
        n,
    )


async def wait_for_exit(process: asyncio.subprocess.Process, timeout: float) -> int:
    try:
        async with asyncio.timeout(timeout):
            return await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.slow
async def test_three_processes_drain_10000_jobs_exactly_once(
    outbox: Outbox, postgres_url: str, schema: str
) -> None:
    """Three worker processes share 10,000 jobs: each job runs exactly once (the runs
    table's primary key would turn a second run into a dead job)."""
    conn = await asyncpg.connect(postgres_url)
    try:
        await fill(conn, schema, "test.record", 10_000)
        workers = [
            await start_worker(postgres_url, schema, "--until-empty", "-c", "20", "--no-migrate")
            for _ in range(3)
        ]
        codes = await asyncio.gather(*(wait_for_exit(w, 120) for w in workers))
        assert codes == [0, 0, 0]
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".runs') == 10_000
        by_process = await conn.fetch(f'SELECT pid, count(*) FROM "{schema}".runs GROUP BY pid')
        assert len(by_process) >= 2  # the work was shared
    finally:
        await conn.close()
    stats = await outbox.stats()
    assert stats.counts == {"test.record": {JobState.SUCCEEDED: 10_000}}


@pytest.mark.slow
async def test_a_killed_workers_jobs_run_again_after_its_lease(
    outbox: Outbox, postgres_url: str, schema: str
) -> None:
    """SIGKILL mid-lease: after the lease expires another worker runs those jobs."""
    conn = await asyncpg.connect(postgres_url)
    victim = survivor = None
    try:
        await fill(conn, schema, "test.hang", 5)
        victim = await start_worker(postgres_url, schema, "--lease", "1s", "-c", "5",
                              "--no-migrate", OUTBOX_TEST_HANG="1")  # fmt: skip
        async with asyncio.timeout(30):
            while await conn.fetchval(f'SELECT count(*) FROM "{schema}".started') < 5:  # noqa: ASYNC110 - another process's writes
                await asyncio.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        assert await wait_for_exit(victim, 10) == -signal.SIGKILL
        survivor = await start_worker(
            postgres_url, schema, "--lease", "1s", "--poll-interval", "100ms",
            "--no-migrate", "--no-listen",
        )  # fmt: skip
        async with asyncio.timeout(30):
            while await conn.fetchval(f'SELECT count(*) FROM "{schema}".runs') < 5:  # noqa: ASYNC110 - another process's writes
                await asyncio.sleep(0.05)
        survivor.send_signal(signal.SIGTERM)
        assert await wait_for_exit(survivor, 30) == 0
        pids = await conn.fetch(f'SELECT DISTINCT pid FROM "{schema}".started')
        assert {r["pid"] for r in pids} == {victim.pid, survivor.pid}
    finally:
        await conn.close()
        for process in (victim, survivor):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
    jobs = await outbox.list()
    assert {job.state for job in jobs} == {JobState.SUCCEEDED}
    assert {job.attempts for job in jobs} == {2}


def test_cli_on_postgres(
    postgres_url: str, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The outbox commands work against PostgreSQL, URL from the environment."""
    os.environ["APITASK_DATABASE_URL"] = postgres_url.replace("postgresql://", "postgres://")
    try:
        assert main(["outbox", "migrate", "--schema", schema]) == 0
        assert main(["outbox", "stats", "--schema", schema]) == 0
        assert capsys.readouterr().out.splitlines()[-1].split()[0] == "TOTAL"
        assert main(["outbox", "list", "--schema", schema]) == 0
        assert main(["outbox", "purge", "--schema", schema, "--older-than", "7d"]) == 0
        assert "purged 0 succeeded job(s)" in capsys.readouterr().out
    finally:
        del os.environ["APITASK_DATABASE_URL"]

        async def drop() -> None:
            admin = await asyncpg.connect(postgres_url)
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()

        asyncio.run(drop())

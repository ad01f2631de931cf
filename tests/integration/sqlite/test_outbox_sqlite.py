"""The outbox on real SQLite files: transactions, idempotency, workers, processes, CLI."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import apitask
from apitask import Backoff, TaskError, TransientError
from apitask.__main__ import main
from apitask.logs import RequestIdFilter, current_request_id
from apitask.outbox import JobState, Outbox, OutboxError, TaskRegistry, open_outbox
from apitask.outbox._sql import load_migrations, load_schema
from apitask.outbox.sqlite import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from sqlalchemy.ext.asyncio import AsyncEngine

    from apitask import JSONValue

HERE = Path(__file__).resolve().parent
TASKS_DIR = str(HERE.parent)  # outbox_tasks.py, for worker subprocesses
if TASKS_DIR not in sys.path:  # and for the in-process CLI runs (--app outbox_tasks:registry)
    sys.path.insert(0, TASKS_DIR)
Record = importlib.import_module("outbox_tasks").Record
FIRST_MIGRATION, SECOND_MIGRATION = load_migrations("sqlite")[:2]  # read at import, not on the loop
KNOWN_MIGRATIONS = tuple(migration.version for migration in load_migrations("sqlite"))
OLD_STATES = ("queued", "running", "succeeded", "failed", "dead")  # before migration 3


class Note:
    """A durable task that appends its text to a shared list (in-process tests)."""

    done: list[str] = []  # noqa: RUF012 - shared on purpose: rebuilt tasks append here
    ran: asyncio.Event  # set by every run; a fresh one per test (see _fresh_notes)
    failures_left: dict[str, int] = {}  # noqa: RUF012

    def __init__(self, text: str, type: str = "note.add") -> None:
        self.type = type
        self.text = text

    def payload(self) -> Mapping[str, JSONValue]:
        return {"text": self.text}

    async def run(self) -> None:
        left = Note.failures_left.get(self.text, 0)
        if left:
            Note.failures_left[self.text] = left - 1
            raise TransientError("not yet", retry_after=0.0)
        Note.done.append(self.text)
        Note.ran.set()


def note_factory(type: str, payload: Mapping[str, JSONValue]) -> Note:
    return Note(str(payload["text"]), type)


@pytest.fixture(autouse=True)
def _fresh_notes() -> None:
    Note.done = []
    Note.ran = asyncio.Event()
    Note.failures_left = {}


@pytest.fixture
def registry() -> TaskRegistry:
    registry = TaskRegistry()
    registry.register_prefix("note.", note_factory)
    return registry


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
async def outbox(db: Path, registry: TaskRegistry) -> AsyncIterator[Outbox]:
    async with open_outbox(f"sqlite:///{db}", registry, synchronous="NORMAL") as outbox:
        assert await outbox.migrate() == list(KNOWN_MIGRATIONS)
        yield outbox


@pytest.fixture
async def engine(db: Path) -> AsyncIterator[AsyncEngine]:
    # create_engine resolves the path (os.path.abspath): not on the loop.
    engine = await asyncio.to_thread(create_async_engine, f"sqlite+aiosqlite:///{db}")
    yield engine
    await engine.dispose()


async def states(outbox: Outbox) -> Counter[JobState]:
    return Counter(job.state for job in await outbox.list(limit=100_000))


async def test_commit_publishes_and_rollback_drops(outbox: Outbox, engine: AsyncEngine) -> None:
    """A job enqueued on the caller's connection exists iff that transaction commits."""
    async with engine.begin() as conn:
        assert await outbox.enqueue(conn, Note("kept")) is not None
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await outbox.enqueue(conn, Note("dropped"))
            raise RuntimeError("the business transaction fails")
    async with AsyncSession(engine) as session:
        await outbox.enqueue(session, Note("session, rolled back"))
        await session.rollback()
        await outbox.enqueue(session, Note("session, committed"))
        await session.commit()
    payloads = sorted(job.payload for job in await outbox.list())
    assert payloads == ['{"text":"kept"}', '{"text":"session, committed"}']


async def test_a_repeated_idempotency_key_is_a_no_op(outbox: Outbox, engine: AsyncEngine) -> None:
    """The second enqueue with the same key returns None and writes nothing."""
    async with engine.begin() as conn:
        first = await outbox.enqueue(conn, Note("once"), "signup:42")
        again = await outbox.enqueue(conn, Note("twice"), "signup:42")
    assert first is not None
    assert again is None
    assert await outbox.enqueue(None, Note("later"), "signup:42") is None
    assert len(await outbox.list()) == 1


async def test_plain_aiosqlite_connection(outbox: Outbox, db: Path) -> None:
    """An aiosqlite connection works too; anything else is a TypeError."""
    async with aiosqlite.connect(db, isolation_level=None) as conn:
        await conn.execute("BEGIN")
        await outbox.enqueue(conn, Note("rolled back"))
        await conn.execute("ROLLBACK")
        await conn.execute("BEGIN")
        await outbox.enqueue(conn, Note("committed"), delay=60.0)
        await conn.execute("COMMIT")
    [job] = await outbox.list()
    assert job.payload == '{"text":"committed"}'
    assert (job.run_at - job.created_at).total_seconds() == pytest.approx(60.0)
    with pytest.raises(TypeError, match="needs a SQLAlchemy AsyncConnection"):
        await outbox.enqueue(object(), Note("x"))
    with pytest.raises(ValueError, match="delay"):
        await outbox.enqueue(None, Note("x"), delay=-1)


async def test_run_inside_a_declared_transaction_joins_it(
    outbox: Outbox, engine: AsyncEngine
) -> None:
    """apitask.run in outbox.transaction() writes into that transaction (rollback drops);
    with no transaction declared the sink writes in its own; non-durable tasks are refused."""
    with pytest.raises(RuntimeError):
        async with AsyncSession(engine) as session, session.begin():
            async with outbox.transaction(session):
                await apitask.run(Note("in rolled-back tx"))
            raise RuntimeError("abort")
    async with AsyncSession(engine) as session, session.begin(), outbox.transaction(session):
        await apitask.run(Note("in committed tx"))
    async with apitask.scope(sink=outbox.sink):
        await apitask.run(Note("own tx"))
        with pytest.raises(TaskError, match="cannot take task 'plain'"):
            await apitask.run(apitask.task("plain", asyncio.sleep, 0))
    texts = sorted(job.payload for job in await outbox.list())
    assert texts == ['{"text":"in committed tx"}', '{"text":"own tx"}']
    assert "OutboxSink" in repr(outbox.sink)
    assert "SQLiteStore" in repr(outbox)


class WhoAmI:
    """A durable task that records the request id it runs for, and logs a line."""

    type = "whoami"
    seen: list[tuple[str, str | None]] = []  # noqa: RUF012 - rebuilt tasks record here

    def __init__(self, name: str) -> None:
        self.name = name

    def payload(self) -> Mapping[str, JSONValue]:
        return {"name": self.name}

    async def run(self) -> None:
        WhoAmI.seen.append((self.name, current_request_id()))
        logging.getLogger("apitask.test.whoami").info("ran %s", self.name)


async def test_a_job_runs_with_the_id_of_the_request_that_enqueued_it(
    outbox: Outbox, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """The request id is stored with the job (in the caller's transaction or the
    sink's own), listed, and set while the worker runs the task: its log lines
    name the request. A job enqueued outside any request has none."""
    WhoAmI.seen = []
    outbox.registry.register("whoami", lambda type, payload: WhoAmI(str(payload["name"])))
    async with apitask.scope(request_id="req-tx"), engine.begin() as conn:
        await outbox.enqueue(conn, WhoAmI("in the caller's transaction"))
    async with apitask.scope(request_id="req-sink", sink=outbox.sink):
        await apitask.run(WhoAmI("through the sink"))
    await outbox.enqueue(None, WhoAmI("outside a request"))
    listed = {json.loads(job.payload)["name"]: job.request_id for job in await outbox.list()}
    expected = {
        "in the caller's transaction": "req-tx",
        "through the sink": "req-sink",
        "outside a request": None,
    }
    assert listed == expected
    caplog.set_level(logging.INFO, logger="apitask.test.whoami")
    caplog.handler.addFilter(RequestIdFilter())
    await outbox.worker(poll_interval=0.01).run(until_empty=True)
    assert dict(WhoAmI.seen) == expected
    logged = {r.getMessage(): getattr(r, "request_id", "unset") for r in caplog.records
              if r.name == "apitask.test.whoami"}  # fmt: skip
    assert logged == {f"ran {name}": request_id for name, request_id in expected.items()}
    assert current_request_id() is None  # the worker's runs left this context alone


async def test_schema_status_reads_how_far_the_file_is_migrated(db: Path) -> None:
    """Never migrated: none applied, every version pending, and nothing created by the
    read. Migrated: up to date. A version removed from the record: pending again."""
    known = KNOWN_MIGRATIONS
    async with open_outbox(f"sqlite:///{db}") as outbox:
        status = await outbox.schema_status()
        assert (status.applied, status.known, status.pending) == ((), known, known)
        assert (status.current, status.latest) == (0, known[-1])
        assert await asyncio.to_thread(tables, db) == []
        await outbox.migrate()
        status = await outbox.schema_status()
        assert (status.applied, status.pending, status.current) == (known, (), known[-1])
        await asyncio.to_thread(
            run_sql, db, f"DELETE FROM apitask_migrations WHERE version = {known[-1]}"
        )
        status = await outbox.schema_status()
        assert (status.pending, status.current) == (known[-1:], known[-2])


def tables(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [name for (name,) in conn.execute("SELECT name FROM sqlite_master")]


def run_sql(db: Path, statement: str) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(statement)
    finally:
        conn.close()


async def test_migrating_a_version_1_file_keeps_its_jobs(tmp_path: Path) -> None:
    """A file made by the first release (migration 1 only) upgrades in place: its
    queued job stays, with no request id."""
    path = tmp_path / "v1.db"
    first = FIRST_MIGRATION

    def make_v1() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("CREATE TABLE apitask_migrations (version INTEGER PRIMARY KEY, "
                         "name TEXT NOT NULL, applied_at REAL NOT NULL)")  # fmt: skip
            for statement in first.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO apitask_migrations VALUES (1, 'initial', 0)")
            conn.execute("INSERT INTO apitask_jobs (type, payload, run_at, created_at) "
                         "VALUES ('note.add', '{\"text\":\"old\"}', 0, 0)")  # fmt: skip
        finally:
            conn.close()

    await asyncio.to_thread(make_v1)
    async with open_outbox(f"sqlite:///{path}") as upgraded:
        assert await upgraded.migrate() == [2, 3, 4, 5]
        [job] = await upgraded.list()
    assert (job.payload, job.state, job.request_id) == ('{"text":"old"}', JobState.QUEUED, None)


async def test_migration_3_renames_failed_jobs_retrying(
    tmp_path: Path, registry: TaskRegistry
) -> None:
    """A version-2 file with a job in every old state: migration 3 rewrites "failed"
    to "retrying" (ids, payloads, errors kept; other states untouched), and a
    worker then claims the retrying job through the rebuilt claim index."""
    path = tmp_path / "v2.db"

    def make_v2() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("CREATE TABLE apitask_migrations (version INTEGER PRIMARY KEY, "
                         "name TEXT NOT NULL, applied_at REAL NOT NULL)")  # fmt: skip
            for migration in (FIRST_MIGRATION, SECOND_MIGRATION):
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO apitask_migrations VALUES (?, ?, 0)",
                    (migration.version, migration.name),
                )
            for id, state in enumerate(OLD_STATES, start=10):
                conn.execute("INSERT INTO apitask_jobs (id, type, payload, state, attempts, "
                             "run_at, created_at, last_error, request_id) VALUES "
                             "(?, 'note.add', ?, ?, 1, 0, 0, ?, 'req-1')",
                             (id, json.dumps({"text": state}), state, f"was {state}"))  # fmt: skip
        finally:
            conn.close()

    await asyncio.to_thread(make_v2)
    async with open_outbox(f"sqlite:///{path}", registry) as upgraded:
        assert await upgraded.migrate() == [3, 4, 5]
        jobs = {job.id: job for job in await upgraded.list()}
        assert {id: job.state.value for id, job in jobs.items()} == {
            10: "queued", 11: "running", 12: "succeeded", 13: "retrying", 14: "dead",
        }  # fmt: skip
        assert (jobs[13].payload, jobs[13].last_error, jobs[13].request_id) == (
            '{"text": "failed"}',
            "was failed",
            "req-1",
        )
        await upgraded.worker(poll_interval=0.01).run(until_empty=True)
        assert sorted(Note.done) == ["failed", "queued"]  # the due jobs ran; nothing else did
        assert await upgraded.migrate() == []


async def test_another_outbox_transaction_is_not_joined(
    outbox: Outbox, engine: AsyncEngine, tmp_path: Path
) -> None:
    """A sink only joins transactions declared on its own outbox."""
    async with open_outbox(f"sqlite:///{tmp_path / 'other.db'}") as other:
        await other.migrate()
        async with AsyncSession(engine) as session, session.begin(), outbox.transaction(session):
            await other.sink.submit(Note("to the other outbox"))
            await session.rollback()
        assert len(await other.list()) == 1


async def test_submit_sync_from_a_thread(outbox: Outbox, db: Path) -> None:
    """WSGI code enqueues from a thread: through the open store, or a one-off connection."""
    await asyncio.to_thread(outbox.sink.submit_sync, Note("via store thread"))
    closed = Outbox(SQLiteStore(str(db)))
    await asyncio.to_thread(closed.sink.submit_sync, Note("one-off connection"))
    assert len(await outbox.list()) == 2
    broken = Outbox(SQLiteStore(str(db.parent)))  # a directory is no database
    with pytest.raises(OutboxError, match="could not enqueue"):
        await asyncio.to_thread(broken.sink.submit_sync, Note("nowhere"))


async def test_worker_runs_jobs_retries_and_dead_letters_poison(
    outbox: Outbox, engine: AsyncEngine
) -> None:
    """Poison jobs (unknown type, bad payload) are dead with the reason; the rest flow,
    and a transient failure is retried until it succeeds."""
    for i in range(20):
        await outbox.enqueue(None, Note(f"n{i}"))
    Note.failures_left["n3"] = 2
    async with engine.begin() as conn:
        now = "strftime('%s','now')"
        await conn.execute(
            text(
                "INSERT INTO apitask_jobs (type, payload, run_at, created_at) VALUES "
                f"('nobody.knows', '{{}}', {now}, {now}), ('note.add', '[1,', {now}, {now})"
            )
        )
    worker = outbox.worker(concurrency=4, poll_interval=0.01, backoff=Backoff(base=0.01))
    await worker.run(until_empty=True)
    assert sorted(Note.done) == sorted(f"n{i}" for i in range(20))
    assert await states(outbox) == {JobState.SUCCEEDED: 20, JobState.DEAD: 2}
    dead = {job.type: job.last_error for job in await outbox.list(JobState.DEAD)}
    # Dead jobs keep their payload: `outbox retry` runs them again.
    assert {job.payload for job in await outbox.list(JobState.DEAD)} == {"{}", "[1,"}
    assert dead["nobody.knows"] == "no task factory registered for type 'nobody.knows'"
    assert str(dead["note.add"]).startswith("undecodable payload")
    # Succeeded jobs keep their metadata, never their payload (the task's data).
    succeeded = await outbox.list(JobState.SUCCEEDED)
    assert {j.payload for j in succeeded} == {"{}"}
    [n3] = [j for j in succeeded if j.attempts > 1]
    assert (n3.attempts, n3.last_error) == (3, "TransientError: not yet")
    stats = await outbox.stats()
    assert stats.total(JobState.SUCCEEDED) == 20
    assert stats.counts["nobody.knows"] == {JobState.DEAD: 1}


async def test_own_inserts_wake_a_worker_in_the_same_process(outbox: Outbox) -> None:
    """SQLite has no NOTIFY: the store wakes its own workers when it inserts, so a
    job enqueued by this process runs long before the (one minute) poll."""
    seen = asyncio.Event()
    registry = outbox.registry

    class Flag(Note):
        async def run(self) -> None:
            seen.set()

    registry.register("flag", lambda type, payload: Flag("x", type))
    async with outbox.worker(poll_interval=60.0):
        await outbox.enqueue(None, Flag("x", type="flag"))
        async with asyncio.timeout(10):
            await seen.wait()


async def test_a_sqlalchemy_commit_wakes_a_worker_in_the_same_process(
    outbox: Outbox, engine: AsyncEngine
) -> None:
    """Jobs written in a SQLAlchemy transaction run when it commits, long before the
    (one minute) poll: after a rollback on the same connection, and again on its next
    transaction."""

    async def ran(*texts: str) -> None:
        async with asyncio.timeout(10):
            while not set(texts) <= set(Note.done):
                await Note.ran.wait()
                Note.ran.clear()

    async with outbox.worker(poll_interval=60.0), engine.connect() as conn:
        with pytest.raises(RuntimeError):
            async with conn.begin():
                await outbox.enqueue(conn, Note("rolled back"))
                raise RuntimeError("the business transaction fails")
        async with conn.begin():
            await outbox.enqueue(conn, Note("first"))
            await outbox.enqueue(conn, Note("second"))
        await ran("first", "second")
        async with conn.begin():
            await outbox.enqueue(conn, Note("next transaction"))
        await ran("next transaction")
    assert sorted(Note.done) == ["first", "next transaction", "second"]


async def test_expired_leases_are_taken_over(outbox: Outbox) -> None:
    """Jobs leased to a worker that stopped heartbeating run again elsewhere."""
    await outbox.enqueue(None, Note("orphan"))
    [claimed] = await outbox.store.claim("ghost-worker", 10, lease=-1.0)  # already expired
    assert claimed.state is JobState.RUNNING
    await outbox.store.heartbeat("someone-else", [claimed.id], 30.0)  # not theirs: no effect
    worker = outbox.worker(poll_interval=0.01, lease=0.05)
    async with worker:
        await Note.ran.wait()  # the job runs again once its lease has expired
    [job] = await outbox.list()
    assert job.state is JobState.SUCCEEDED
    assert job.attempts == 2
    assert job.last_error == "lease expired: worker ghost-worker stopped heartbeating"


async def test_a_worker_does_not_reap_its_own_leases(outbox: Outbox) -> None:
    """An expired lease is taken over by any worker but the one holding it."""
    await outbox.enqueue(None, Note("mine"))
    [claimed] = await outbox.store.claim("slow-writer", 10, lease=-1.0)
    assert await outbox.store.reap("slow-writer") == 0
    assert (await outbox.list())[0].state is JobState.RUNNING
    assert await outbox.store.reap("another") == 1
    [job] = await outbox.list()
    assert (job.id, job.state) == (claimed.id, JobState.RETRYING)


async def test_retention_retry_and_purge(outbox: Outbox) -> None:
    """retention=0 deletes on success; dead jobs can be re-queued by id or all, and purged."""
    await outbox.enqueue(None, Note("gone"))
    await outbox.worker(poll_interval=0.01, retention=0.0).run(until_empty=True)
    assert await outbox.list() == []
    for name in ("a", "b", "c"):
        await outbox.enqueue(None, Note(name, type="nobody.a"))
    await outbox.worker(poll_interval=0.01).run(until_empty=True)
    ids = [job.id for job in await outbox.list(JobState.DEAD)]
    assert await outbox.retry([ids[0]]) == 1
    assert (await states(outbox))[JobState.QUEUED] == 1
    assert await outbox.retry() == 2
    await outbox.worker(poll_interval=0.01).run(until_empty=True)
    assert await outbox.purge(JobState.DEAD, older_than=3600) == 0
    assert await outbox.purge(JobState.DEAD) == 3


async def test_migrated_schema_equals_declared_schema(outbox: Outbox, tmp_path: Path) -> None:
    """Applying every migration gives the schema schema.sql declares; migrating again is a no-op."""
    assert await outbox.migrate() == []
    declared = tmp_path / "declared.db"

    def describe(path: Path, create: bool) -> object:
        conn = sqlite3.connect(path)
        try:
            if create:
                for statement in load_schema("sqlite"):
                    conn.execute(statement)
            tables = {}
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='apitask_jobs'"
            ):
                tables[name] = (
                    conn.execute(f"PRAGMA table_xinfo({name})").fetchall(),
                    sorted(conn.execute(f"PRAGMA index_list({name})").fetchall()),
                )
            indexes = sorted(
                " ".join(sql.split())
                for (sql,) in conn.execute(
                    "SELECT sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
                )
            )
            checks = [
                " ".join(sql.split()).count("CHECK")
                for (sql,) in conn.execute(
                    "SELECT sql FROM sqlite_master WHERE name = 'apitask_jobs'"
                )
            ]
            return tables, indexes, checks
        finally:
            conn.close()

    migrated = await asyncio.to_thread(describe, Path(outbox.store.path), False)  # type: ignore[attr-defined]
    assert migrated == await asyncio.to_thread(describe, declared, True)
    assert migrated[0]  # type: ignore[index]


async def test_store_errors_and_settings(tmp_path: Path) -> None:
    """Driver errors surface as OutboxError; bad settings as ValueError naming them."""
    store = SQLiteStore(str(tmp_path))  # a directory
    with pytest.raises(OutboxError, match="could not open"):
        await store.open()
    await store.aclose()
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore("x.db", synchronous="SOMETIMES")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteStore("x.db", busy_timeout=-1)
    unmigrated = SQLiteStore(str(tmp_path / "empty.db"))
    with pytest.raises(OutboxError, match="could not claim jobs"):
        await unmigrated.claim("w", 1, 1.0)
    await unmigrated.aclose()
    await unmigrated.aclose()


def run_cli(*args: str) -> int:
    return main(list(args))


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TASKS_DIR, env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def start_worker(url: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "apitask", "worker", "--app", "outbox_tasks:registry",
         "--url", url, "--poll-interval", "50ms", *args],
        env=worker_env(**env),
    )  # fmt: skip


def enqueue_records(url: str, n: int) -> None:
    async def fill() -> None:
        async with open_outbox(url) as outbox:
            await outbox.migrate()
            for i in range(n):
                await outbox.enqueue(None, Record(i))

    asyncio.run(fill())


def test_two_worker_processes_share_one_file(tmp_path: Path) -> None:
    """Two processes drain one SQLite file: every job runs exactly once."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    runs = tmp_path / "runs.txt"
    enqueue_records(url, 400)
    workers = [
        start_worker(url, "--until-empty", "-c", "4", OUTBOX_TEST_RUNS_FILE=str(runs))
        for _ in range(2)
    ]
    assert [w.wait(timeout=60) for w in workers] == [0, 0]
    counts = Counter(int(line.split()[0]) for line in runs.read_text().splitlines())
    assert counts == Counter(range(400))


def test_worker_drains_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM makes the worker finish its jobs and exit 0 (function form of --app)."""
    url = f"sqlite:///{tmp_path / 'term.db'}"
    runs = tmp_path / "runs.txt"
    enqueue_records(url, 5)
    worker = subprocess.Popen(
        [sys.executable, "-m", "apitask", "worker", "--app", "outbox_tasks:make_registry",
         "--url", url, "--lease", "1m", "--no-listen"],
        env=worker_env(OUTBOX_TEST_RUNS_FILE=str(runs)),
    )  # fmt: skip
    try:
        deadline = 30.0
        while (not runs.exists() or len(runs.read_text().splitlines()) < 5) and deadline > 0:
            subprocess.run(["sleep", "0.05"], check=True)  # another process: poll its output
            deadline -= 0.05
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
    assert len(runs.read_text().splitlines()) == 5


def set_state(path: Path, job_id: int, state: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("UPDATE apitask_jobs SET state = ? WHERE id = ?", (state, job_id))
    finally:
        conn.close()


def test_cli_list_stats_retry_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The outbox commands print readable tables and counts."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert run_cli("outbox", "migrate", "--url", url) == 0
    assert f"applied migrations: {list(KNOWN_MIGRATIONS)}" in capsys.readouterr().out
    assert run_cli("outbox", "migrate", "--url", url) == 0
    assert "schema up to date" in capsys.readouterr().out
    enqueue_records(url, 3)
    assert run_cli("worker", "--app", "outbox_tasks:registry", "--url", url,
                   "--until-empty", "--max-attempts", "1") == 0  # fmt: skip
    out = capsys.readouterr().out
    assert run_cli("outbox", "stats", "--url", url) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "TYPE", "QUEUED", "RUNNING", "SUCCEEDED", "RETRYING", "DEAD", "ALL",
    ]  # fmt: skip
    # No OUTBOX_TEST_RUNS_FILE and no PostgreSQL: the runs failed permanently.
    assert out.splitlines()[1].split() == ["test.record", "0", "0", "0", "0", "3", "3"]
    assert out.splitlines()[2].split() == ["TOTAL", "0", "0", "0", "0", "3", "3"]
    assert run_cli("outbox", "list", "--url", url, "--state", "dead", "--limit", "2") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["ID", "TYPE", "STATE", "ATTEMPTS"]
    assert len(lines) == 3
    assert "KeyError" in lines[1]
    # A job waiting for its retry, listed under its state's name and (with a
    # warning, for one release) under the old name "failed".
    set_state(tmp_path / "cli.db", 3, "retrying")
    capsys.readouterr()
    assert run_cli("outbox", "list", "--url", url, "--state", "retrying") == 0
    listed = capsys.readouterr()
    assert [line.split()[:3] for line in listed.out.splitlines()[1:]] == [
        ["3", "test.record", "retrying"]
    ]
    assert listed.err == ""
    assert run_cli("outbox", "list", "--url", url, "--state", "failed") == 0
    deprecated = capsys.readouterr()
    assert deprecated.out == listed.out
    assert deprecated.err == (
        "apitask outbox: warning: --state failed is deprecated, use --state retrying\n"
    )
    set_state(tmp_path / "cli.db", 3, "dead")
    assert run_cli("outbox", "retry", "--url", url, "1") == 0
    assert "queued 1 dead job(s) again" in capsys.readouterr().out
    assert run_cli("outbox", "retry", "--url", url, "--all") == 0
    assert "queued 2 dead job(s) again" in capsys.readouterr().out
    assert run_cli("outbox", "purge", "--url", url, "--state", "dead") == 0
    assert "purged 0 dead job(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="give job ids"):
        run_cli("outbox", "retry", "--url", url)


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing URLs, bad URLs, bad registries and unreachable databases fail clearly."""
    os.environ.pop("APITASK_DATABASE_URL", None)
    saved = os.environ.pop("DATABASE_URL", None)
    try:
        with pytest.raises(SystemExit, match="no database"):
            run_cli("outbox", "stats")
    finally:
        if saved is not None:
            os.environ["DATABASE_URL"] = saved
    with pytest.raises(SystemExit, match="url: expected"):
        run_cli("outbox", "stats", "--url", "mysql://x")
    assert run_cli("outbox", "stats", "--url", f"sqlite:///{tmp_path}") == 1
    assert "apitask outbox: could not" in capsys.readouterr().err
    dir_url = f"sqlite:///{tmp_path}"
    assert run_cli("worker", "--app", "outbox_tasks:registry", "--url", dir_url) == 1
    assert "apitask worker: could not" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--max-attempts"):
        run_cli("worker", "--app", "outbox_tasks:registry", "--url", "sqlite:///x.db",
                "--max-attempts", "0")  # fmt: skip
    with pytest.raises(SystemExit):
        run_cli("worker", "--app", "no_such_module:registry")
    assert "cannot load" in capsys.readouterr().err
    assert run_cli() == 2

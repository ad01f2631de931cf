"""Outbox.enqueue_sync on real SQLite files and PostgreSQL: every connection kind,
commit publishes, rollback drops, the errors, and jobs shared with the async side."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import sqlalchemy
from psycopg import sql
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

import apitask
from apitask import TaskError
from apitask._scope import RequestScope, activate, deactivate
from apitask.outbox import Job, Outbox, OutboxError, TaskRegistry, open_outbox
from apitask.outbox.postgres import PostgresStore
from apitask.wsgi import TaskMiddleware

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from apitask import JSONValue


class Note:
    """A durable task; runs append its text to ``done``."""

    done: list[str] = []  # noqa: RUF012 - shared on purpose: rebuilt tasks append here

    def __init__(self, text: str) -> None:
        self.type = "note.add"
        self.text = text

    def payload(self) -> Mapping[str, JSONValue]:
        return {"text": self.text}

    async def run(self) -> None:
        Note.done.append(self.text)


def registry() -> TaskRegistry:
    registry = TaskRegistry()
    registry.register("note.add", lambda type, payload: Note(str(payload["text"])))
    return registry


class Database:
    """One migrated outbox database, and ways to open connections to it."""

    def __init__(self, dialect: str, url: str, schema: str | None) -> None:
        self.dialect = dialect
        self.url = url
        self.schema = schema
        # Not opened: enqueue_sync needs only the store's SQL.
        self.outbox = open_outbox(url, registry(), schema=schema)

    def run(self, fn: Callable[[Outbox], Any]) -> Any:
        """Run ``await fn(outbox)`` on a fresh outbox and loop (async tools in a sync test)."""

        async def go() -> Any:
            async with open_outbox(self.url, registry(), schema=self.schema) as outbox:
                return await fn(outbox)

        return asyncio.run(go())

    def jobs(self) -> list[Job]:
        return sorted(self.run(lambda outbox: outbox.list(limit=1000)), key=lambda j: j.id)

    def texts(self) -> list[str]:
        """The committed jobs' payloads, read on a connection of its own (no lock taken)."""
        table = "apitask_jobs" if self.schema is None else f'"{self.schema}".apitask_jobs'
        conn = self.driver()
        try:
            return [row[0] for row in conn.execute(f"SELECT payload FROM {table} ORDER BY id")]
        finally:
            conn.close()

    def driver(self, **options: Any) -> Any:
        """The DB-API connection this dialect's sync code uses (sqlite3 / psycopg 3)."""
        if self.dialect == "sqlite":
            return sqlite3.connect(self.url.removeprefix("sqlite:///"), **options)
        return psycopg.connect(self.url, **options)

    @contextlib.contextmanager
    def engine(self, **options: Any) -> Iterator[sqlalchemy.Engine]:
        """A SQLAlchemy engine over the same driver, disposed when the block ends."""
        url = self.url.replace("postgresql://", "postgresql+psycopg://")
        engine = sqlalchemy.create_engine(url, **options)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database("sqlite", f"sqlite:///{tmp_path / 'outbox.db'}", None)
        database.run(lambda outbox: outbox.migrate())
        yield database
        return
    url = request.getfixturevalue("postgres_url")
    database = Database("postgresql", url, f"apitask_sync_test_{secrets.token_hex(4)}")
    database.run(lambda outbox: outbox.migrate())
    try:
        yield database
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{database.schema}" CASCADE')


@pytest.fixture(autouse=True)
def _fresh_notes() -> None:
    Note.done = []


@contextlib.contextmanager
def request(request_id: str) -> Iterator[None]:
    """A request scope, as the WSGI middleware opens one, in this thread."""
    token = activate(RequestScope(request_id=request_id))
    try:
        yield
    finally:
        deactivate(token)


def payload(text: str) -> str:
    return f'{{"text":"{text}"}}'


# -- commit publishes, rollback drops: each connection kind ------------------------


def test_driver_connection(db: Database) -> None:
    """sqlite3 / psycopg 3: the job is in iff the caller's transaction commits."""
    conn = db.driver()
    try:
        assert isinstance(db.outbox.enqueue_sync(conn, Note("kept")), int)
        conn.commit()
        db.outbox.enqueue_sync(conn, Note("dropped"))
        assert db.texts() == [payload("kept")]  # not visible before the commit
        conn.rollback()
    finally:
        conn.close()
    assert db.texts() == [payload("kept")]


def test_sqlalchemy_connection(db: Database) -> None:
    with db.engine() as engine:
        with engine.begin() as conn:
            db.outbox.enqueue_sync(conn, Note("kept"))
        with pytest.raises(RuntimeError), engine.begin() as conn:
            db.outbox.enqueue_sync(conn, Note("dropped"))
            raise RuntimeError("the business transaction fails")
    assert db.texts() == [payload("kept")]


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_sqlalchemy_pysqlite_with_driver_autocommit_and_an_emitted_begin(db: Database) -> None:
    """SQLAlchemy's recipe for SAVEPOINTs on SQLite: the driver in autocommit, BEGIN
    emitted by SQLAlchemy's ``begin`` event. That transaction is a transaction."""
    with db.engine() as engine:

        @sqlalchemy.event.listens_for(engine, "connect")
        def _driver_autocommit(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None

        @sqlalchemy.event.listens_for(engine, "begin")
        def _emit_begin(conn: sqlalchemy.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

        with engine.connect() as conn:
            db.outbox.enqueue_sync(conn, Note("rolled back"))
            conn.rollback()
            db.outbox.enqueue_sync(conn, Note("committed"))
            conn.commit()
    assert db.texts() == [payload("committed")]


def test_sqlalchemy_session_and_scoped_session(db: Database) -> None:
    """A Session joins (or begins) its transaction; scoped_session is Flask-SQLAlchemy's."""
    with db.engine() as engine:
        with Session(engine) as session:
            db.outbox.enqueue_sync(session, Note("rolled back"))
            session.rollback()
            db.outbox.enqueue_sync(session, Note("committed"))
            session.commit()
        scoped = scoped_session(sessionmaker(engine))
        db.outbox.enqueue_sync(scoped, Note("scoped"))
        scoped.commit()
        scoped.remove()
    assert db.texts() == [payload("committed"), payload("scoped")]


def test_idempotency_key_and_delay(db: Database) -> None:
    with db.engine() as engine, engine.begin() as sa:
        assert db.outbox.enqueue_sync(sa, Note("a"), "key-a", delay=3600) is not None
        assert db.outbox.enqueue_sync(sa, Note("again"), "key-a") is None
    conn = db.driver()
    try:
        assert db.outbox.enqueue_sync(conn, Note("b again"), "key-a") is None
        conn.commit()
    finally:
        conn.close()
    (job,) = db.jobs()
    assert (job.payload, job.idempotency_key) == (payload("a"), "key-a")
    assert (job.run_at - job.created_at).total_seconds() == pytest.approx(3600, abs=5)


def test_no_connection_commits_on_its_own(db: Database) -> None:
    """conn=None: a transaction of the outbox's own, committed before it returns."""
    assert isinstance(db.outbox.enqueue_sync(None, Note("alone")), int)
    assert db.texts() == [payload("alone")]


# -- the same jobs as the async side ---------------------------------------------


def test_sync_and_async_enqueue_write_the_same_row_and_a_worker_runs_both(
    db: Database,
) -> None:
    with db.engine() as engine, engine.begin() as conn, request("req-sync"):
        db.outbox.enqueue_sync(conn, Note("from sync"))

    # Made off the loop: the engine resolves the SQLite path (a blocking call).
    async_engine = create_async_engine(
        db.url.replace("sqlite://", "sqlite+aiosqlite://").replace(
            "postgresql://", "postgresql+asyncpg://"
        )
    )

    async def enqueue_async(outbox: Outbox) -> None:
        try:
            async with async_engine.begin() as conn, apitask.scope(request_id="req-async"):
                await outbox.enqueue(conn, Note("from async"))
        finally:
            await async_engine.dispose()

    db.run(enqueue_async)
    sync_job, async_job = db.jobs()
    assert (sync_job.type, sync_job.payload, sync_job.request_id) == (
        "note.add",
        payload("from sync"),
        "req-sync",
    )
    assert (async_job.type, async_job.payload, async_job.request_id) == (
        "note.add",
        payload("from async"),
        "req-async",
    )
    assert (sync_job.state, sync_job.attempts) == (async_job.state, async_job.attempts)

    async def work(outbox: Outbox) -> None:
        await outbox.worker(poll_interval=0.01).run(until_empty=True)

    db.run(work)
    assert sorted(Note.done) == ["from async", "from sync"]


# -- PostgreSQL: listening workers are woken by the commit -------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_commit_notifies_listening_workers_and_rollback_does_not(db: Database) -> None:
    assert isinstance(db.outbox.store, PostgresStore)
    channel = db.outbox.store.channel
    with db.driver(autocommit=True) as listener, db.driver() as conn:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        db.outbox.enqueue_sync(conn, Note("dropped"))
        conn.rollback()
        db.outbox.enqueue_sync(conn, Note("kept"))
        conn.commit()
        # A marker sent after both: what arrives before it is all they sent.
        conn.execute("SELECT pg_notify(%s, 'end')", (channel,))
        conn.commit()
        notes = [n.payload for n in listener.notifies(timeout=10, stop_after=2)]
        assert notes == ["", "end"]  # one wake-up: the commit's, none from the rollback


# -- Django's connection, by its shape ----------------------------------------------


class DjangoShaped:
    """What apitask reads of Django's PostgreSQL connection, over a real psycopg one.

    Django's PostgreSQL cursors are psycopg cursors taking the "pyformat"
    style; the atomic state is Django's ``in_atomic_block`` and
    ``get_autocommit()``. (The Django app's own tests run real Django.)
    """

    vendor = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any], *, atomic: bool) -> None:
        self.conn = conn
        self.in_atomic_block = atomic

    def get_autocommit(self) -> bool:
        return bool(self.conn.autocommit)

    def cursor(self) -> psycopg.Cursor[Any]:
        return self.conn.cursor()


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_django_connection_in_atomic_and_in_autocommit(db: Database) -> None:
    with db.driver(autocommit=True) as conn:
        with conn.transaction():  # what atomic() does on an autocommit connection
            django = DjangoShaped(conn, atomic=True)
            assert db.outbox.enqueue_sync(django, Note("in atomic"), "key") is not None
            assert db.outbox.enqueue_sync(django, Note("again"), "key") is None
        with pytest.raises(psycopg.errors.UndefinedFunction), conn.transaction():
            db.outbox.enqueue_sync(DjangoShaped(conn, atomic=True), Note("rolled back"))
            conn.execute("SELECT no_such_function()")
        outside = DjangoShaped(conn, atomic=False)
        with pytest.raises(OutboxError, match=r"transaction\.atomic\(\).*allow_autocommit=True"):
            db.outbox.enqueue_sync(outside, Note("refused"))
        db.outbox.enqueue_sync(outside, Note("autocommit"), allow_autocommit=True)
    assert db.texts() == [payload("in atomic"), payload("autocommit")]


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_django_connection_to_another_database_kind(db: Database, postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn, pytest.raises(TypeError, match="on sqlite"):
        db.outbox.enqueue_sync(DjangoShaped(conn, atomic=True), Note("x"))


# -- errors that name the fix --------------------------------------------------------


def test_autocommit_connections_are_refused_unless_allowed(db: Database) -> None:
    options = {"isolation_level": None} if db.dialect == "sqlite" else {"autocommit": True}
    conn = db.driver(**options)
    try:
        with pytest.raises(OutboxError, match=r"autocommit mode.*allow_autocommit=True"):
            db.outbox.enqueue_sync(conn, Note("refused"))
        db.outbox.enqueue_sync(conn, Note("on purpose"), allow_autocommit=True)
        conn.execute("BEGIN")  # an explicit transaction is one
        db.outbox.enqueue_sync(conn, Note("in begin"))
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    with (
        db.engine(isolation_level="AUTOCOMMIT") as engine,
        engine.connect() as sa,
        pytest.raises(OutboxError, match="AUTOCOMMIT"),
    ):
        db.outbox.enqueue_sync(sa, Note("refused"))
    assert db.texts() == [payload("on purpose")]


class NotDurable:
    type = "plain"

    async def run(self) -> None:
        raise AssertionError("never runs")


def test_a_task_without_payload_is_refused_naming_durable_task(db: Database) -> None:
    conn = db.driver()
    try:
        with pytest.raises(TypeError, match=r"implement apitask\.DurableTask"):
            db.outbox.enqueue_sync(conn, NotDurable())
        with pytest.raises(ValueError, match="delay must be >= 0"):
            db.outbox.enqueue_sync(conn, Note("x"), delay=-1)
    finally:
        conn.close()


def test_unsupported_and_async_connections_are_refused(db: Database, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"needs a SQLAlchemy Connection or Session \(sync\)"):
        db.outbox.enqueue_sync(object(), Note("x"))
    async_engine = create_async_engine("sqlite+aiosqlite://")

    async def with_async_connection() -> None:
        try:
            async with async_engine.connect() as conn:
                with pytest.raises(TypeError, match=r"await outbox\.enqueue"):
                    db.outbox.enqueue_sync(conn, Note("x"))
        finally:
            await async_engine.dispose()

    asyncio.run(with_async_connection())


class OtherDriver:
    """A DB-API connection of a driver enqueue_sync does not drive (it forwards to sqlite3)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_sqlalchemy_over_another_driver_is_refused_naming_the_urls(
    db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "other.db"
    engine = sqlalchemy.create_engine(
        "sqlite://", creator=lambda: OtherDriver(sqlite3.connect(path))
    )
    try:
        with engine.connect() as conn, pytest.raises(TypeError, match="OtherDriver: use a"):
            db.outbox.enqueue_sync(conn, Note("x"))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_connection_to_another_kind_of_database_is_refused(
    db: Database, postgres_url: str, tmp_path: Path
) -> None:
    if db.dialect == "sqlite":
        other = Database("postgresql", postgres_url, "unused")
    else:
        other = Database("sqlite", f"sqlite:///{tmp_path / 'other.db'}", None)
    conn = other.driver()
    try:
        with pytest.raises(TypeError, match=f"this outbox is on {db.dialect}"):
            db.outbox.enqueue_sync(conn, Note("x"))
    finally:
        conn.close()
    with (
        other.engine() as engine,
        engine.connect() as sa,
        pytest.raises(TypeError, match=f"on {db.dialect}"),
    ):
        db.outbox.enqueue_sync(sa, Note("x"))


def test_database_errors_are_outbox_errors(db: Database, tmp_path: Path) -> None:
    """The outbox tables missing (never migrated): the driver's error is the cause."""
    if db.dialect == "sqlite":
        empty = Database("sqlite", f"sqlite:///{tmp_path / 'empty.db'}", None)
    else:
        empty = Database("postgresql", db.url, "apitask_sync_never_migrated")
    conn = empty.driver()
    try:
        with pytest.raises(OutboxError, match="could not enqueue the job") as raised:
            empty.outbox.enqueue_sync(conn, Note("x"))
        assert isinstance(raised.value.__cause__, (sqlite3.Error, psycopg.Error))
    finally:
        conn.close()
    with (
        empty.engine() as engine,
        engine.connect() as sa,
        pytest.raises(OutboxError, match="could not enqueue"),
    ):
        empty.outbox.enqueue_sync(sa, Note("x"))


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_an_async_psycopg_connection_is_refused(db: Database) -> None:
    async def attempt() -> None:
        async with await psycopg.AsyncConnection.connect(db.url) as conn:
            with pytest.raises(TypeError, match="a psycopg 3 Connection"):
                db.outbox.enqueue_sync(conn, Note("x"))

    asyncio.run(attempt())


# -- apitask.run_sync in a scope bound to the outbox: transaction_sync ---------------


def test_transaction_sync_without_a_scope_opens_one_for_the_block(db: Database) -> None:
    conn = db.driver()
    try:
        with db.outbox.transaction_sync(conn):
            apitask.run_sync(Note("rolled back"))
            assert apitask.current_scope() is not None
        conn.rollback()
        assert apitask.current_scope() is None
        with db.outbox.transaction_sync(conn):
            apitask.run_sync(Note("committed"))
        assert db.texts() == []  # in conn's transaction, not committed yet
        conn.commit()
    finally:
        conn.close()
    assert db.texts() == [payload("committed")]


def wsgi_app(outbox: Outbox, conn: Any, declare: Outbox | None) -> Any:
    """A WSGI app under TaskMiddleware(sink=outbox.sink) whose handler declares
    ``conn``'s transaction to ``declare`` (or to none) and hands a task over."""

    def handler(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        name = environ["PATH_INFO"].strip("/")
        if declare is None:
            apitask.run_sync(Note(name))
        else:
            with declare.transaction_sync(conn):
                apitask.run_sync(Note(name))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return TaskMiddleware(handler, sink=outbox.sink)


def call(app: Any, path: str, request_id: str) -> bytes:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "HTTP_X_REQUEST_ID": request_id}
    body = app(environ, lambda status, headers: None)
    try:
        return b"".join(body)
    finally:
        body.close()


def test_wsgi_middleware_bound_to_the_outbox(db: Database) -> None:
    """In the request's scope the task joins the declared transaction, with the
    request's id; undeclared (or declared to another outbox) it commits on its own."""
    conn = db.driver()
    other = open_outbox(db.url, registry(), schema=db.schema)
    try:
        assert call(wsgi_app(db.outbox, conn, db.outbox), "/in-tx", "req-1") == b"ok"
        assert db.texts() == []
        # Committed before the next requests: on SQLite an insert of the
        # outbox's own would wait for this transaction's write lock.
        conn.commit()
        assert call(wsgi_app(db.outbox, conn, None), "/own", "req-2") == b"ok"
        assert call(wsgi_app(db.outbox, conn, other), "/other", "req-3") == b"ok"
        assert db.texts() == [payload("in-tx"), payload("own"), payload("other")]
    finally:
        conn.close()
    jobs = {job.payload: job.request_id for job in db.jobs()}
    assert jobs == {payload("in-tx"): "req-1", payload("own"): "req-2", payload("other"): "req-3"}


def test_transaction_sync_errors(db: Database) -> None:
    options = {"isolation_level": None} if db.dialect == "sqlite" else {"autocommit": True}
    conn = db.driver(**options)
    try:
        with db.outbox.transaction_sync(conn), pytest.raises(OutboxError, match="autocommit"):
            apitask.run_sync(Note("no transaction"))
        with db.outbox.transaction_sync(conn), pytest.raises(TaskError, match="DurableTask"):
            apitask.run_sync(NotDurable())
    finally:
        conn.close()
    assert db.texts() == []

"""enqueue_sync(None, task) on PostgreSQL: psycopg connections kept and reused, on a real server.

Each test names its connections (``application_name``) and counts them in
``pg_stat_activity``: what the server sees, not what the object believes.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import secrets
import sys
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from apitask.outbox import NewJob, OutboxError
from apitask.outbox import postgres as postgres_module
from apitask.outbox._pg_sync import SyncConnections, _close_idle
from apitask.outbox.postgres import PostgresStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from multiprocessing.connection import Connection

pytestmark = pytest.mark.postgres


@pytest.fixture
def admin(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def name() -> str:
    """This test's application_name: its connections, among the other suites'."""
    return f"apitask_sync_{secrets.token_hex(4)}"


@pytest.fixture
def store(postgres_url: str, name: str, admin: psycopg.Connection[Any]) -> Iterator[PostgresStore]:
    schema = f"apitask_sync_conn_{secrets.token_hex(4)}"
    store = PostgresStore(
        postgres_url,
        schema=schema,
        pool_size=2,
        connect_kwargs={"server_settings": {"application_name": name}},
    )

    async def migrate() -> None:
        await store.migrate()
        await store.aclose()

    asyncio.run(migrate())
    try:
        yield store
    finally:
        asyncio.run(store.aclose())
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def backends(admin: psycopg.Connection[Any], name: str, count: int | None = None) -> list[int]:
    """The server's backend pids of ``name``'s connections; with ``count``, once there
    are that many (a closed connection's backend takes a moment to go)."""
    deadline = time.monotonic() + 10
    while True:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid", (name,)
        ).fetchall()
        pids = [row[0] for row in rows]
        if count is None or len(pids) == count or time.monotonic() > deadline:
            return pids


def job(text: str, key: str | None = None) -> NewJob:
    return NewJob("note", f'{{"text":"{text}"}}', key, 0.0, None)


def connections(postgres_url: str, name: str, keep: int = 2) -> tuple[SyncConnections, list[int]]:
    """A SyncConnections whose connections carry ``name``; the list counts connects."""
    opened: list[int] = []

    def connect() -> psycopg.Connection[Any]:
        opened.append(1)
        return psycopg.connect(postgres_url, autocommit=True, application_name=name)

    return SyncConnections(connect, keep=keep), opened


def backend_pid(sync: SyncConnections) -> int:
    [(pid,)] = sync.fetch("SELECT pg_backend_pid()", {})
    return int(pid)


def test_enqueues_reuse_one_connection_and_aclose_closes_it(
    store: PostgresStore, admin: psycopg.Connection[Any], name: str
) -> None:
    ids = [store.insert_sync(job(f"n{i}")) for i in range(20)]
    assert all(isinstance(id, int) for id in ids) and len(set(ids)) == 20
    assert len(backends(admin, name)) == 1  # twenty jobs, one connection
    assert store.insert_sync(job("k", key="same")) is not None
    assert store.insert_sync(job("k", key="same")) is None  # the idempotency key holds
    asyncio.run(store.aclose())
    assert backends(admin, name, count=0) == []
    assert isinstance(store.insert_sync(job("after")), int)  # usable again after aclose
    assert len(backends(admin, name)) == 1


def test_a_connection_the_server_ended_is_replaced_and_the_job_is_stored_once(
    store: PostgresStore, admin: psycopg.Connection[Any], name: str
) -> None:
    store.insert_sync(job("before"))
    [old] = backends(admin, name)
    admin.execute("SELECT pg_terminate_backend(%s)", (old,))  # a restart, an idle timeout
    backends(admin, name, count=0)
    assert isinstance(store.insert_sync(job("after")), int)
    [new] = backends(admin, name)
    assert new != old
    table = f'"{store.schema}".apitask_jobs'
    texts = [row[0] for row in admin.execute(f"SELECT payload FROM {table} ORDER BY id")]
    assert texts == ['{"text":"before"}', '{"text":"after"}']


def test_a_refused_statement_is_an_outbox_error_and_the_connection_stays(
    store: PostgresStore, admin: psycopg.Connection[Any], name: str
) -> None:
    store.insert_sync(job("ok"))
    [pid] = backends(admin, name)
    admin.execute(f'DROP TABLE "{store.schema}".apitask_jobs CASCADE')
    with pytest.raises(OutboxError, match="could not enqueue the job") as raised:
        store.insert_sync(job("lost"))
    assert isinstance(raised.value.__cause__, psycopg.errors.UndefinedTable)
    assert backends(admin, name) == [pid]  # nothing wrong with the connection: kept


def test_a_fresh_connection_failing_is_not_tried_again(postgres_url: str, name: str) -> None:
    """Only an idle connection the server ended is replaced: a statement that fails
    on the connection it was sent on (here, cancelled) raises at once."""
    sync, opened = connections(postgres_url, name)
    sync.fetch("SELECT set_config('statement_timeout', '1', false)", {})
    with pytest.raises(psycopg.errors.QueryCanceled):
        sync.fetch("SELECT pg_sleep(1)", {})
    assert len(opened) == 1
    sync.close()


def test_connections_beyond_keep_close_and_close_waits_for_the_lent(
    postgres_url: str, admin: psycopg.Connection[Any], name: str
) -> None:
    """Two enqueues at once open two connections; one stays (keep=1). close() during
    an enqueue closes its connection when the enqueue is done."""
    sync, opened = connections(postgres_url, name, keep=1)
    lock = secrets.randbelow(2**31)
    admin.execute("SELECT pg_advisory_lock(%s)", (lock,))
    waiting = [
        threading.Thread(
            target=sync.fetch, args=("SELECT pg_advisory_xact_lock_shared(%(k)s)", {"k": lock})
        )
        for _ in range(2)
    ]
    for thread in waiting:
        thread.start()
    assert len(backends(admin, name, count=2)) == 2  # both blocked on the lock, each on its own
    admin.execute("SELECT pg_advisory_unlock(%s)", (lock,))
    for thread in waiting:
        thread.join()
    assert len(backends(admin, name, count=1)) == 1
    assert len(opened) == 2

    admin.execute("SELECT pg_advisory_lock(%s)", (lock,))
    lent = threading.Thread(
        target=sync.fetch, args=("SELECT pg_advisory_xact_lock_shared(%(k)s)", {"k": lock})
    )
    lent.start()
    deadline = time.monotonic() + 10
    while not admin.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s",
        (lock,),
    ).fetchone()[0]:  # type: ignore[index]
        assert time.monotonic() < deadline
    sync.close()  # the one connection is lent out: nothing idle to close yet
    assert len(backends(admin, name)) == 1
    admin.execute("SELECT pg_advisory_unlock(%s)", (lock,))
    lent.join()
    assert backends(admin, name, count=0) == []  # closed as it came back


def test_an_outbox_nobody_closes_leaves_no_connection_and_no_warning(
    postgres_url: str, admin: psycopg.Connection[Any], name: str
) -> None:
    """A sync app's module-level outbox is often never closed: collecting it closes
    its idle connection (an unclosed psycopg connection would warn, and warnings
    are errors here)."""
    sync, _ = connections(postgres_url, name)
    backend_pid(sync)
    assert len(backends(admin, name)) == 1
    del sync
    gc.collect()
    assert backends(admin, name, count=0) == []


def child_backend(sync: SyncConnections, answer: Connection) -> None:
    """In a forked child: the backend the child's statement ran on."""
    # The fork inherits pytest's warnings filter ("error"). Under `coverage run`,
    # coverage's multiprocessing wrapper saves the child's data after this returns
    # and warns there that apitask was imported before it started measuring (in the
    # parent): as an error, that aborts the save and the child exits 1, its
    # coverage lost. Coverage's own warnings are not the code under test's.
    warnings.filterwarnings("ignore", module=r"coverage(\.|$)")
    answer.send(backend_pid(sync))
    sync.close()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork()")
def test_a_forked_child_opens_its_own_and_leaves_the_parents_alone(
    postgres_url: str, name: str
) -> None:
    """Forked with a connection idle (gunicorn --preload, after an enqueue at import):
    the child must not talk on its parent's session, nor close it."""
    sync, _ = connections(postgres_url, name)
    parent = backend_pid(sync)
    fork = multiprocessing.get_context("fork")  # coverage follows multiprocessing children
    receive, send = fork.Pipe(duplex=False)
    child = fork.Process(target=child_backend, args=(sync, send))
    child.start()
    childs = receive.recv()
    child.join()
    assert child.exitcode == 0
    assert childs != parent
    assert backend_pid(sync) == parent  # the parent's session survived the child
    sync.close()


def test_the_finalizer_closes_only_in_the_process_that_opened(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        _close_idle([conn], os.getpid() + 1)  # as in a forked child: the parent's
        assert not conn.closed
        _close_idle([conn], os.getpid())
        assert conn.closed


def test_without_psycopg_a_one_off_connection_still_enqueues(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "apitask.outbox._pg_sync")
    postgres_module._sync_connections_class.cache_clear()
    try:
        fresh = PostgresStore(store.dsn, schema=store.schema)
        assert isinstance(fresh.insert_sync(job("no psycopg")), int)
        assert fresh._sync is None
    finally:
        postgres_module._sync_connections_class.cache_clear()


def test_server_settings_become_libpq_options() -> None:
    options = postgres_module._libpq_options({"application_name": "a b\\c", "work_mem": 64})
    assert options == "-c application_name=a\\ b\\\\c -c work_mem=64"
    assert postgres_module._libpq_options({}) is None

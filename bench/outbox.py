"""Outbox throughput against raw SQL measured in the same run.

Cases (N no-op jobs each, median of --repeats runs):

PostgreSQL (in a schema of its own, dropped at the end):
  raw        one INSERT per transaction (autocommit, asyncpg, 1 connection) while a
             concurrent consumer drains with SELECT ... FOR UPDATE SKIP LOCKED LIMIT 10
             + DELETE, one transaction per batch (../shared/peers: ~1,900 jobs/s);
             time until the last job is consumed.
  outbox     each job enqueued in its own transaction, either through SQLAlchemy
             (engine.begin() + outbox.enqueue(conn, task)) or the outbox's own short
             transaction (outbox.sink.submit), while one worker (concurrency 10,
             LISTEN) runs them; time until the last job has run.
  in-tx      the extra cost of one enqueue inside an existing transaction: N
             transactions of one business INSERT, with and without an enqueue.

SQLite (a file in a temporary directory, WAL, the same synchronous level on both sides):
  raw        stdlib sqlite3, BEGIN; INSERT; COMMIT per job (as ../shared/peers), one
             thread, no event loop: the baseline of every SQLite ratio, the concurrent
             cases' included (the same N rows, one transaction each).
  hop        the same transactions, each sent from the event loop to one thread and
             awaited: through run_in_executor, and through the store's own thread
             (a SimpleQueue in, call_soon_threadsafe out). The floor of any library
             that keeps database calls off the loop with one awaited call per job.
  schema     plain sqlite3 again, the outbox's own INSERT into its table (7 columns,
             partial indexes): what the row itself costs, no event loop.
  enqueue    sink.submit per job, awaited one after the other, no worker running.
  outbox     sink.submit per job, or SQLAlchemy+aiosqlite engine.begin() + enqueue,
             with a worker running them concurrently; time until the last job has run.
             "sequential": one producer awaiting each enqueue; "16 producers": 16
             coroutines doing the same, N/16 each (the store commits the enqueues
             waiting together in one transaction; each returns after that commit).

Usage: .venv/bin/python bench/outbox.py [--pg postgresql://postgres@127.0.0.1:5432/test]
       [-n 5000] [--repeats 3] [--only pg,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sqlite3
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from _common import Series, save, table
from apitask.outbox import Outbox, TaskRegistry
from apitask.outbox._sql import load_queries
from apitask.outbox._store import NewJob
from apitask.outbox._store_thread import StoreThread
from apitask.outbox.postgres import PostgresStore
from apitask.outbox.sqlite import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from apitask import JSONValue

PAYLOAD = '{"to": "user@example.test", "template": "welcome"}'
PRODUCERS = 16  # concurrent producers in the SQLite concurrent cases


class Counter:
    """Counts runs and fires an event at the target."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.done = asyncio.Event()


class Noop:
    """A durable no-op task with a mail-sized payload."""

    type = "bench.noop"
    counter: Counter | None = None

    def payload(self) -> Mapping[str, JSONValue]:
        return {"to": "user@example.test", "template": "welcome"}

    async def run(self) -> None:
        counter = Noop.counter
        assert counter is not None
        counter.count += 1
        if counter.count >= counter.target:
            counter.done.set()


REGISTRY = TaskRegistry()
REGISTRY.register("bench.noop", lambda type, payload: Noop())
TASK = Noop()


async def end_to_end(
    outbox: Outbox, n: int, produce: Callable[[], Awaitable[None]], **worker: Any
) -> float:
    """Seconds from the first enqueue until the n-th job has run, worker running alongside."""
    Noop.counter = Counter(n)
    async with outbox.worker(concurrency=10, poll_interval=0.05, retention=0.0, **worker):
        start = time.perf_counter()
        await produce()
        await Noop.counter.done.wait()
        return time.perf_counter() - start


# ------------------------------------------------------------------ PostgreSQL


async def pg_raw(dsn: str, schema: str, n: int) -> float:
    settings = {"search_path": schema}
    producer = await asyncpg.connect(dsn, server_settings=settings)
    consumer = await asyncpg.connect(dsn, server_settings=settings)
    await producer.execute("TRUNCATE raw_jobs")
    insert = await producer.prepare("INSERT INTO raw_jobs (payload) VALUES ($1::jsonb)")
    select = await consumer.prepare(
        "SELECT id, payload FROM raw_jobs ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 10"
    )
    delete = await consumer.prepare("DELETE FROM raw_jobs WHERE id = ANY($1::bigint[])")

    async def produce() -> None:
        for _ in range(n):
            await insert.fetch(PAYLOAD)

    async def consume() -> None:
        done = 0
        while done < n:
            async with consumer.transaction():
                rows = await select.fetch()
                if rows:
                    await delete.fetch([r["id"] for r in rows])
            done += len(rows)
            if not rows:
                await asyncio.sleep(0.001)

    start = time.perf_counter()
    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - start
    await producer.close()
    await consumer.close()
    return elapsed


async def pg_cases(dsn: str, n: int, repeats: int) -> list[Series]:
    schema = f"apitask_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.execute(
        f'CREATE TABLE "{schema}".raw_jobs (id bigserial PRIMARY KEY, '
        "payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());"
        f'CREATE TABLE "{schema}".users (id bigserial PRIMARY KEY, email text NOT NULL)'
    )
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"), pool_size=2)
    outbox = Outbox(PostgresStore(dsn, schema=schema), REGISTRY)
    raw = Series("pg raw INSERT/txn + SKIP LOCKED consumer", "jobs/s")
    via_sa = Series("pg outbox e2e, SQLAlchemy tx per job", "jobs/s")
    via_sink = Series("pg outbox e2e, own tx per job (sink)", "jobs/s")
    bare = Series("pg tx: business INSERT only", "us")
    with_job = Series("pg tx: business INSERT + enqueue", "us")
    extra = Series("pg extra cost of enqueue in a tx", "us")
    users = text(f'INSERT INTO "{schema}".users (email) VALUES (:email)')
    try:
        await outbox.migrate()

        async def sa_produce() -> None:
            for _ in range(n):
                async with engine.begin() as conn:
                    await outbox.enqueue(conn, TASK)

        async def sink_produce() -> None:
            for _ in range(n):
                await outbox.sink.submit(TASK)

        async def transactions(enqueue: bool) -> float:
            start = time.perf_counter()
            for _ in range(n // 5):
                async with engine.begin() as conn:
                    await conn.execute(users, {"email": "user@example.test"})
                    if enqueue:
                        await outbox.enqueue(conn, TASK)
            return (time.perf_counter() - start) / (n // 5) * 1e6

        for _ in range(repeats):
            raw.values.append(n / await pg_raw(dsn, schema, n))
            via_sa.values.append(n / await end_to_end(outbox, n, sa_produce))
            via_sink.values.append(n / await end_to_end(outbox, n, sink_produce))
            a, b = await transactions(False), await transactions(True)
            bare.values.append(a)
            with_job.values.append(b)
            extra.values.append(b - a)
            # CASCADE: the job history (migration 5) references the jobs.
            await admin.execute(f'TRUNCATE "{schema}".apitask_jobs, "{schema}".users CASCADE')
    finally:
        await outbox.aclose()
        await engine.dispose()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()
    print(table([raw, via_sa, via_sink], raw, higher_is_better=True))
    print(table([bare, with_job], bare))
    print(f"extra cost of one enqueue inside an existing transaction: {extra.median:.0f} us")
    return [raw, via_sa, via_sink, bare, with_job, extra]


# ---------------------------------------------------------------------- SQLite


def sqlite_raw(path: Path, n: int, synchronous: str) -> float:
    """Jobs/s of BEGIN; INSERT; COMMIT in a plain loop (no event loop, no thread hop)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS raw_jobs (id INTEGER PRIMARY KEY, "
        "payload TEXT NOT NULL, created_at REAL NOT NULL)"
    )
    start = time.perf_counter()
    for _ in range(n):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO raw_jobs (payload, created_at) VALUES (?, ?)", (PAYLOAD, 0.0))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def sqlite_outbox_table(store: SQLiteStore, n: int) -> float:
    """Jobs/s of the outbox's own INSERT into its table, in a plain loop (as raw)."""
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous={store.synchronous}")
    insert = load_queries("sqlite")["insert_unkeyed"]
    job = NewJob(TASK.type, PAYLOAD)
    start = time.perf_counter()
    for _ in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(insert, SQLiteStore._params(job))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


async def sqlite_raw_hop(path: Path, n: int, synchronous: str, *, store_thread: bool) -> float:
    """The same transactions, each sent from the event loop to one thread (our rule):
    through ``run_in_executor``, or through the SQLite store's own thread."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA synchronous={synchronous}")

    def one() -> None:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO raw_jobs (payload, created_at) VALUES (?, ?)", (PAYLOAD, 0.0))
        conn.execute("COMMIT")

    if store_thread:
        thread = StoreThread(list, name="bench-hop")
        start = time.perf_counter()
        for _ in range(n):
            await thread.call(one)
        elapsed = time.perf_counter() - start
        thread.stop()
    else:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as executor:
            start = time.perf_counter()
            for _ in range(n):
                await loop.run_in_executor(executor, one)
            elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def paired(rows: list[Series], baseline: Series) -> str:
    """Each case's ratio to the baseline of the same repeat: median (min-max).

    Less exposed than the ratio of medians to a shared machine's slow phases,
    which hit a repeat's cases alike.
    """
    lines = ["paired ratios, per repeat: median (min-max)"]
    for row in rows[1:]:
        ratios = sorted(a / b for a, b in zip(row.values, baseline.values, strict=True))
        median = statistics.median(ratios)
        lines.append(f"  {row.name:<44} {median:5.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})")
    return "\n".join(lines)


async def clear(store: SQLiteStore) -> None:
    """Delete every job (what the schema and enqueue-only cases left behind)."""
    await store._call("clear", lambda conn: conn.execute("DELETE FROM apitask_jobs"))


async def sqlite_cases(n: int, repeats: int) -> list[Series]:
    rows: list[Series] = []
    per_producer = n // PRODUCERS
    with tempfile.TemporaryDirectory(prefix="apitask-bench-") as tmp:
        for level in ("NORMAL", "FULL"):
            raw = Series(f"sqlite {level} raw INSERT/txn", "jobs/s")
            hop = Series(f"sqlite {level} raw, 1 hop (run_in_executor)", "jobs/s")
            queue_hop = Series(f"sqlite {level} raw, 1 hop (store thread)", "jobs/s")
            via_sink = Series(f"sqlite {level} outbox e2e, own tx (sink)", "jobs/s")
            via_sa = Series(f"sqlite {level} outbox e2e, SQLAlchemy tx", "jobs/s")
            schema = Series(f"sqlite {level} raw, outbox's INSERT and table", "jobs/s")
            enqueue = Series(f"sqlite {level} outbox enqueue only (sink)", "jobs/s")
            concurrent = Series(f"sqlite {level} outbox e2e, own tx, {PRODUCERS} prod", "jobs/s")
            for i in range(repeats):
                path = Path(tmp) / f"{level}-{i}.db"
                raw.values.append(await asyncio.to_thread(sqlite_raw, path, n, level))
                hop.values.append(await sqlite_raw_hop(path, n, level, store_thread=False))
                queue_hop.values.append(await sqlite_raw_hop(path, n, level, store_thread=True))
                store = SQLiteStore(str(path), synchronous=level)
                async with Outbox(store, REGISTRY) as outbox:
                    await outbox.migrate()

                    async def sink_produce(outbox: Outbox = outbox, jobs: int = n) -> None:
                        for _ in range(jobs):
                            await outbox.sink.submit(TASK)

                    async def producers(outbox: Outbox = outbox) -> None:
                        await asyncio.gather(
                            *(sink_produce(outbox, per_producer) for _ in range(PRODUCERS))
                        )

                    schema.values.append(await asyncio.to_thread(sqlite_outbox_table, store, n))
                    start = time.perf_counter()
                    await sink_produce()
                    enqueue.values.append(n / (time.perf_counter() - start))
                    await clear(store)  # the e2e cases start from an empty table
                    via_sink.values.append(n / await end_to_end(outbox, n, sink_produce))
                    jobs = per_producer * PRODUCERS
                    concurrent.values.append(jobs / await end_to_end(outbox, jobs, producers))
                    engine = await asyncio.to_thread(
                        create_async_engine, f"sqlite+aiosqlite:///{path}"
                    )

                    @event.listens_for(engine.sync_engine, "connect")
                    def pragmas(dbapi: Any, record: Any, level: str = level) -> None:
                        dbapi.execute(f"PRAGMA synchronous={level}")

                    async def sa_produce(outbox: Outbox = outbox, engine: Any = engine) -> None:
                        for _ in range(n):
                            async with engine.begin() as conn:
                                await outbox.enqueue(conn, TASK)

                    via_sa.values.append(n / await end_to_end(outbox, n, sa_produce))
                    await engine.dispose()
            cases = [raw, hop, queue_hop, schema, enqueue, via_sink, via_sa, concurrent]
            print(table(cases, raw, higher_is_better=True))
            print(
                f"(every ratio, the {PRODUCERS}-producer one included, is to the same N rows "
                "inserted one per transaction by plain sqlite3 on one thread)"
            )
            print(paired(cases, raw))
            rows += cases
    return rows


async def main_async(args: argparse.Namespace) -> None:
    only = set(args.only.split(","))
    rows: list[Series] = []
    if "pg" in only:
        rows += await pg_cases(args.pg, args.n, args.repeats)
    if "sqlite" in only:
        rows += await sqlite_cases(args.n, args.repeats)
    print("saved", save("outbox", rows, n=args.n, repeats=args.repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="pg,sqlite")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

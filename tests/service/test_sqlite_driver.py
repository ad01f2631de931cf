"""The one-trip SQLite connection behind the service's engine, on a real database file.

The service's flows only run plain statements; these cover the rest of the
DB-API the SQLAlchemy adapter may call: executemany, streamed results
(fetchone/fetchmany), counts, and errors that leave the connection usable.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from apitask_auth.storage import sqlite_driver
from apitask_auth.storage.db import create_engine

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    # Off the loop: building the URL touches the file system (blockbuster watches).
    engine = await asyncio.to_thread(create_engine, f"sqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    yield engine
    await engine.dispose()


async def test_executemany_counts_and_rows(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "a"}, {"v": "b"}])
        result = await conn.execute(text("INSERT INTO t (v) VALUES ('c')"))
        assert result.lastrowid == 3
        updated = await conn.execute(text("UPDATE t SET v = v || '!' WHERE id < 3"))
        assert updated.rowcount == 2
        rows = (await conn.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
    assert rows == ["a!", "b!", "c"]


async def test_streamed_results_are_fetched_in_parts(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": str(i)} for i in range(5)])
        stream = await conn.stream(text("SELECT v FROM t ORDER BY id"))
        first = await stream.fetchone()
        parts = [row.v async for part in stream.partitions(2) for row in part]
    assert first is not None
    assert [first.v, *parts] == ["0", "1", "2", "3", "4"]


async def test_an_error_rolls_back_and_the_connection_goes_on(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError, match="UNIQUE"):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (v) VALUES ('x')"))
            await conn.execute(text("INSERT INTO t (v) VALUES ('x')"))
    async with engine.begin() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
        await conn.execute(text("INSERT INTO t (v) VALUES ('x')"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT v FROM t"))).scalars().all() == ["x"]


async def test_the_cursor_hands_out_rows_one_at_a_time(tmp_path: Path) -> None:
    connection = await sqlite_driver.connect(str(tmp_path / "raw.db"))
    try:
        cursor = await connection.cursor().__aenter__()
        await cursor.execute("SELECT 1 UNION ALL SELECT 2")
        assert cursor.description is not None
        assert [await cursor.fetchone(), await cursor.fetchone()] == [(1,), (2,)]
        assert await cursor.fetchone() is None
        await cursor.close()
    finally:
        await connection.close()


async def test_begin_goes_with_the_first_statement_and_takes_the_write_lock(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """BEGIN IMMEDIATE rides in the first statement's trip: a transaction that has
    only read still holds the write lock, so another writer is refused until it ends."""
    other = await sqlite_driver.connect(str(tmp_path / "driver.db"), timeout=0)
    try:
        async with engine.begin() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert isinstance(raw, sqlite_driver.OneTripConnection)
            before = raw.pending_begin  # not sent yet: no trip of its own
            await conn.execute(text("SELECT count(*) FROM t"))
            assert (before, raw.pending_begin) == ("BEGIN IMMEDIATE", None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await other.execute("INSERT INTO t (v) VALUES ('other')")
        await other.execute("INSERT INTO t (v) VALUES ('other')")
        await other.commit()
    finally:
        await other.close()


async def test_a_transaction_without_statements_never_begins(engine: AsyncEngine) -> None:
    """Committed or rolled back with nothing run, it leaves no transaction open."""
    for end in ("commit", "rollback"):
        async with engine.connect() as conn:
            await conn.begin()
            raw = (await conn.get_raw_connection()).driver_connection
            assert isinstance(raw, sqlite_driver.OneTripConnection)
            await getattr(conn, end)()
            assert raw.pending_begin is None
            assert not raw.in_transaction
    async with engine.begin() as conn:  # and the next transaction works as ever
        await conn.execute(text("INSERT INTO t (v) VALUES ('after')"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT v FROM t"))).scalars().all() == ["after"]


async def test_a_begin_that_cannot_get_the_lock_fails_its_statement(
    tmp_path: Path,
) -> None:
    """Another writer holds the lock past the busy timeout: the first statement
    raises, nothing of it was run, and the connection goes on afterwards."""
    path = tmp_path / "locked.db"
    engine = await asyncio.to_thread(create_engine, f"sqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        await conn.exec_driver_sql("PRAGMA busy_timeout=0")
    holder = await sqlite_driver.connect(str(path), isolation_level=None)
    try:
        await holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="locked"):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (v) VALUES ('refused')"))
        await holder.rollback()
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (v) VALUES ('later')"))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT v FROM t"))).scalars().all() == ["later"]
    finally:
        await holder.close()
        await engine.dispose()

"""SQLite for the async engine with one trip to the database thread per statement.

SQLAlchemy's aiosqlite adapter makes four trips from the event loop to the
connection's thread for every statement (make a cursor, execute, fetch, close).
Each trip is a queue hand-off and a wake-up of the loop: on a busy two-core
machine they cost more than the SQL itself, and a flow that writes four rows
paid ~20 of them. This connection keeps aiosqlite's thread and queue, but its
cursor runs execute, fetch and close as one function in that thread, and
answers description, rows and counts from what that trip brought back.

A transaction's ``BEGIN`` waits for the first statement and goes to the
thread in that statement's trip (:meth:`OneTripConnection.begin_with_next`):
one trip fewer per transaction. A transaction that ran no statement never
began, so its commit or rollback has nothing to do.

Used through ``create_async_engine(..., async_creator=...)``; see ``db.create_engine``.

It stands on aiosqlite's private API (``_execute``, ``_conn``, ``_thread``), so
apitask-auth pins aiosqlite to the releases tested, and
``tests/service/test_aiosqlite_contract.py`` names what differs on another. It
is kept because it measurably pays (docs/benchmarks.md, "The SQLite driver");
plain aiosqlite is the fallback if it stops paying.
"""

from __future__ import annotations

import asyncio
import sqlite3
from functools import partial
from typing import TYPE_CHECKING, Any

import aiosqlite

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = ["OneTripConnection", "connect"]

_Description = tuple[tuple[str, None, None, None, None, None, None], ...] | None
_Outcome = tuple[_Description, int, int | None, list[Any]]


def _run(
    connection: sqlite3.Connection, begin: str | None, call: Callable[[sqlite3.Cursor], object]
) -> _Outcome:
    """Begin if asked, then execute on a fresh cursor, read all it returned and close it
    (in the database thread)."""
    if begin is not None:
        connection.execute(begin)  # waits here for the write lock, as it would on its own
    cursor = connection.cursor()
    try:
        call(cursor)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class _Cursor:
    """The DB-API cursor SQLAlchemy's adapter drives, one database trip per execute."""

    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.description: _Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> _Cursor:
        return self  # nothing to open: the sqlite3 cursor lives only inside a trip

    async def _trip(self, call: Callable[[sqlite3.Cursor], object]) -> _Cursor:
        connection = self._connection
        begin, connection.pending_begin = connection.pending_begin, None
        # _execute is aiosqlite's own hand-off to its thread (untyped, but the one it uses).
        outcome: _Outcome = await connection._execute(  # type: ignore[no-untyped-call]
            _run, connection._conn, begin, call
        )
        self.description, self.rowcount, self.lastrowid, self._rows = outcome
        return self

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> _Cursor:
        return await self._trip(lambda cursor: cursor.execute(sql, parameters))

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> _Cursor:
        return await self._trip(lambda cursor: cursor.executemany(sql, parameters))

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def close(self) -> None:
        self._rows = []


class OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors take one trip per statement."""

    pending_begin: str | None = None
    """The ``BEGIN`` the next statement's trip runs first, if any."""

    def cursor(self) -> _Cursor:  # type: ignore[override]
        return _Cursor(self)

    def begin_with_next(self, sql: str) -> None:
        """Begin a transaction with ``sql`` in the next statement's trip, not a trip of its own."""
        self.pending_begin = sql

    def _never_began(self) -> bool:
        """Whether the transaction being ended ran no statement (so never began); forget it."""
        pending, self.pending_begin = self.pending_begin, None
        return pending is not None

    async def commit(self) -> None:
        """Commit; a transaction that ran no statement never began, so there is nothing to do."""
        if not self._never_began():
            await super().commit()

    async def rollback(self) -> None:
        """Roll back; nothing to do for a transaction that ran no statement."""
        if not self._never_began():
            await super().rollback()


async def connect(database: str, **kwargs: Any) -> OneTripConnection:
    """Open ``database`` (a path) with sqlite3 arguments ``kwargs`` in its own thread."""
    connection = OneTripConnection(partial(sqlite3.connect, database, **kwargs), 64)
    connection._thread.daemon = True  # as SQLAlchemy does: never hold up interpreter exit
    try:
        await connection  # starts the thread and opens the database in it
    except BaseException:
        # aiosqlite stops its thread on a failed open without waiting for it: wait, or
        # the thread reports its stop to a loop that may be closed by then.
        await asyncio.to_thread(connection._thread.join)
        raise
    return connection

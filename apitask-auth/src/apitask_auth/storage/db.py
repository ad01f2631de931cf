"""The engine for SQLite or PostgreSQL, and the few helpers that depend on which.

:mod:`.tables` holds the table definitions, :mod:`.migrations` the steps that
bring a database to them.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from apitask_auth.storage import pg_connect, sqlite_driver
from apitask_auth.storage.database_url import DatabaseURL, parse_database_url

if TYPE_CHECKING:
    from sqlalchemy import Connection, Table

__all__ = [
    "BACKENDS",
    "Backend",
    "backend",
    "create_engine",
    "engine_like",
    "upsert",
]


Backend = Literal["postgresql", "sqlite"]
BACKENDS: tuple[Backend, ...] = ("postgresql", "sqlite")


def backend(conn: AsyncConnection) -> Backend:
    """Which of the two databases ``conn`` talks to."""
    return "postgresql" if conn.dialect.name == "postgresql" else "sqlite"


def upsert(on: Backend, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``table`` that takes ON CONFLICT clauses, in the SQL of ``on``."""
    return postgresql.insert(table) if on == "postgresql" else sqlite.insert(table)


# The database each PostgreSQL engine was made for, so another engine on it
# (engine_like) connects with the same arguments (sslmode...).
_databases: weakref.WeakKeyDictionary[AsyncEngine, DatabaseURL] = weakref.WeakKeyDictionary()


def engine_like(database: AsyncEngine | DatabaseURL, **options: Any) -> AsyncEngine:
    """An engine on a PostgreSQL database: the one a :func:`create_engine` engine
    uses, or a parsed ``DATABASE_URL``; ``options`` go to ``create_async_engine``."""
    parsed = database if isinstance(database, DatabaseURL) else _databases[database]
    timeout = {"timeout": parsed.connect_timeout} if parsed.connect_timeout else {}
    # engine.url without the query (for logs and reprs); asyncpg reads the whole DSN.
    url = make_url(parsed.url).set(drivername="postgresql+asyncpg", query={})
    # A server refusing connections for being full is waited out (pg_connect.py).
    engine = create_async_engine(
        url, async_creator=lambda: pg_connect.connect(parsed.url, **timeout), **options
    )
    _databases[engine] = parsed
    return engine


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine for ``sqlite:///file`` (aiosqlite) or ``postgres://`` (asyncpg).

    PostgreSQL connections go through asyncpg's own DSN parser, so libpq's
    parameters (``?sslmode=disable``...) mean what they mean to GoTrue; see
    :mod:`apitask_auth.storage.database_url` for those accepted.

    SQLite gets WAL, foreign keys, a busy timeout, and ``BEGIN IMMEDIATE`` for
    every transaction, so two writers queue on the lock instead of one failing
    with "database is locked" when it upgrades a read lock.

    Raises:
        ValueError: ``database_url`` is not one the service can use.
    """
    parsed = parse_database_url(database_url)
    # hide_parameters: a failed statement's message (and so the log) must not
    # carry its parameters, which include addresses and token hashes.
    if parsed.backend == "postgresql":
        return engine_like(parsed, pool_pre_ping=True, hide_parameters=True)
    url = make_url(parsed.url.replace("sqlite://", "sqlite+aiosqlite://", 1))
    database = url.database or ":memory:"
    engine = create_async_engine(
        url,
        hide_parameters=True,
        # One trip to the connection's thread per statement instead of aiosqlite's four;
        # the same sqlite3 arguments SQLAlchemy's aiosqlite dialect gives a file.
        async_creator=lambda: sqlite_driver.connect(database, timeout=30, check_same_thread=False),
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite_driver.OneTripConnection)
        # Sent with the transaction's first statement, in the same trip to the thread.
        driver.begin_with_next("BEGIN IMMEDIATE")

    return engine

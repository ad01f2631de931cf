"""Enqueue from sync code: a job row written through the caller's own connection.

The row and its SQL are the async enqueue's (:meth:`Store.insert_statement`);
only the way to the database differs. Each connection kind is recognised
here and driven in its own parameter style:

* SQLAlchemy (sync) ``Connection``, ``Session`` or ``scoped_session``
  (Flask-SQLAlchemy's ``db.session``), over ``sqlite3`` or psycopg 3;
* a ``sqlite3.Connection``;
* a psycopg 3 ``Connection``;
* Django's connection (``django.db.connection``, ``connections[alias]``),
  recognised by its shape, never imported: an object with ``cursor()``,
  ``vendor``, ``in_atomic_block`` and ``get_autocommit()``.

A connection in autocommit mode with no transaction open would commit the
job on its own, apart from the caller's writes: that is refused unless the
caller says it is what they want.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from ._records import OutboxError
from ._sql import pyformat
from ._store import translate_errors

if TYPE_CHECKING:
    from ._store import NewJob, Store

__all__ = ["insert_sync_in"]

_SUPPORTED = (
    "a SQLAlchemy Connection or Session (sync), a sqlite3.Connection, a psycopg 3 "
    "Connection, or Django's connection"
)
# sqlite3.Connection.autocommit (Python 3.12+) when the legacy isolation_level rules.
_LEGACY = -1


def _dialect_of(driver: object) -> str | None:
    """``"sqlite"`` or ``"postgresql"`` for a DB-API connection this module drives."""
    if isinstance(driver, sqlite3.Connection):
        return "sqlite"
    if type(driver).__module__.partition(".")[0] == "psycopg":
        import psycopg  # present: it made this object

        if isinstance(driver, psycopg.Connection):
            return "postgresql"
    return None


def _no_transaction(driver: Any) -> bool:
    """True when a statement on ``driver`` would commit at once (autocommit, idle)."""
    if isinstance(driver, sqlite3.Connection):
        mode = getattr(driver, "autocommit", _LEGACY)
        return not driver.in_transaction and (
            mode is True or (mode == _LEGACY and driver.isolation_level is None)
        )
    # psycopg 3: status 0 is IDLE (no transaction block open).
    return bool(driver.autocommit) and int(driver.info.transaction_status) == 0


def _is_django(conn: object) -> bool:
    return all(
        hasattr(conn, name) for name in ("cursor", "vendor", "in_atomic_block", "get_autocommit")
    )


def _refuse_autocommit(conn: object, fix: str) -> OutboxError:
    return OutboxError(
        f"enqueue_sync() needs an open transaction on {conn!r}, which is in autocommit "
        f"mode: the job would commit on its own, apart from your writes. {fix}, or pass "
        "allow_autocommit=True to commit the job at once on purpose"
    )


def _check_dialect(store: Store, dialect: str, conn: object) -> None:
    if dialect != store.dialect:
        raise TypeError(
            f"enqueue_sync() got {conn!r}, a {dialect} connection, but this outbox is on "
            f"{store.dialect}: pass a connection to the outbox's database"
        )


def insert_sync_in(
    store: Store, conn: object | None, job: NewJob, *, allow_autocommit: bool
) -> int | None:
    """Insert ``job`` in the transaction open on ``conn``, or in one of the store's
    own when ``conn`` is ``None``; return the id, or ``None`` when its idempotency
    key was taken.

    Raises:
        TypeError: ``conn`` is not a connection this function drives, or is
            to another kind of database than the store's.
        OutboxError: ``conn`` has no transaction open (and
            ``allow_autocommit`` is false), or the database refused the insert.
    """
    if conn is None:
        return store.insert_sync(job)
    sql, params = store.insert_statement(job)
    dialect = _dialect_of(conn)  # the driver's own connections first: the cheapest test
    if dialect is None:
        if type(conn).__module__.startswith("sqlalchemy."):
            return _insert_sqlalchemy(store, conn, sql, params, allow_autocommit)
        if _is_django(conn):
            return _insert_django(store, conn, sql, params, allow_autocommit)
        raise TypeError(f"enqueue_sync() needs {_SUPPORTED}, got {conn!r}")
    _check_dialect(store, dialect, conn)
    if not allow_autocommit and _no_transaction(conn):
        raise _refuse_autocommit(conn, "Begin one (conn.execute('BEGIN'), conn.transaction())")
    driver: Any = conn
    if dialect == "sqlite":
        with translate_errors("enqueue the job", sqlite3.Error):
            rows = driver.execute(sql, params).fetchall()
    else:
        import psycopg

        with translate_errors("enqueue the job", psycopg.Error):
            rows = driver.execute(pyformat(sql), params).fetchall()
    return int(rows[0][0]) if rows else None


def _insert_sqlalchemy(
    store: Store, conn: Any, sql: str, params: dict[str, object], allow_autocommit: bool
) -> int | None:
    from sqlalchemy.exc import SQLAlchemyError

    # AsyncConnection, AsyncSession, async_scoped_session (no import needed to tell).
    if type(conn).__module__.startswith("sqlalchemy.ext.asyncio."):
        raise TypeError(
            f"enqueue_sync() got {conn!r}, an async connection: "
            "await outbox.enqueue(conn, task) instead"
        )
    with translate_errors("enqueue the job", SQLAlchemyError):
        if not hasattr(conn, "exec_driver_sql"):
            # A Session or scoped_session: the connection of its transaction,
            # begun if it has none (as any statement on the session would).
            conn = conn.connection()
        elif not conn.in_transaction():
            # Begun now, not by the insert: the check below must see the
            # transaction (SQLAlchemy's pysqlite recipe emits BEGIN on this).
            conn.begin()
        driver = conn.connection.dbapi_connection
        dialect = _dialect_of(driver)
        if dialect is None:
            raise TypeError(
                "enqueue_sync() drives SQLAlchemy over sqlite3 or psycopg 3, not "
                f"{type(driver).__module__}.{type(driver).__qualname__}: use a "
                "sqlite:// or postgresql+psycopg:// URL"
            )
        _check_dialect(store, dialect, conn)
        if not allow_autocommit and _no_transaction(driver):
            raise _refuse_autocommit(
                conn, "Remove isolation_level='AUTOCOMMIT' from this engine or connection"
            )
        # The driver's own parameter style: exec_driver_sql hands it over as is.
        if store.dialect == "postgresql":
            sql = pyformat(sql)
        rows = conn.exec_driver_sql(sql, params).fetchall()
    return int(rows[0][0]) if rows else None


def _insert_django(
    store: Store, conn: Any, sql: str, params: dict[str, object], allow_autocommit: bool
) -> int | None:
    _check_dialect(store, conn.vendor, conn)
    if not allow_autocommit and not conn.in_atomic_block and conn.get_autocommit():
        raise _refuse_autocommit(conn, "Enqueue inside `with transaction.atomic():`")
    # Django's cursors take the "pyformat" style on every backend, and raise
    # Django's own exceptions, which Django code expects: they are not wrapped.
    with conn.cursor() as cursor:
        cursor.execute(pyformat(sql), params)
        row = cursor.fetchone()
    return None if row is None else int(row[0])

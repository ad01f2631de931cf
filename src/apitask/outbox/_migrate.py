"""Applying the packaged migrations: which ones a database lacks, in what order,
and what is recorded for each in ``apitask_migrations``.

One owner for the SQLite store, the PostgreSQL store and Django's migrations
of the outbox app. The caller owns the transaction: the SQLite store runs
:func:`apply_migrations` inside its ``BEGIN IMMEDIATE``, Django inside the
transaction its ``migrate`` opened. The PostgreSQL store is asynchronous and
qualifies every statement with its schema, so it drives the same steps
(:func:`pending_migrations`, :func:`migration_record`) itself.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping

    from ._sql import Migration

__all__ = ["Cursor", "apply_migrations", "migration_record", "pending_migrations"]


class Cursor(Protocol):
    """A DB-API cursor: ``sqlite3.Cursor``, or a Django connection's cursor."""

    def execute(self, sql: str, parameters: Mapping[str, Any] = ..., /) -> object: ...

    def fetchall(self) -> list[Any]: ...


def pending_migrations(
    migrations: Iterable[Migration], applied: Collection[int], upto: int | None = None
) -> list[Migration]:
    """The ``migrations`` (in version order) not in ``applied``, up to version ``upto``."""
    return [
        migration
        for migration in migrations
        if migration.version not in applied and (upto is None or migration.version <= upto)
    ]


def migration_record(migration: Migration) -> dict[str, object]:
    """The parameters of the ``record_migration`` query for ``migration``
    (PostgreSQL's takes no ``now``: the column defaults to the server's)."""
    return {"version": migration.version, "name": migration.name, "now": time.time()}


def apply_migrations(
    cursor: Cursor,
    queries: Mapping[str, str],
    migrations: Iterable[Migration],
    *,
    record: str,
    upto: int | None = None,
) -> list[int]:
    """Apply the ``migrations`` up to ``upto`` that ``cursor``'s database lacks,
    recording each with ``record`` (the ``record_migration`` query in the
    cursor's parameter style), in the cursor's current transaction; return the
    versions applied."""
    cursor.execute(queries["migrations_table"])
    cursor.execute(queries["applied_migrations"])
    done = {row[0] for row in cursor.fetchall()}
    applied = []
    for migration in pending_migrations(migrations, done, upto):
        for statement in migration.statements:
            # No parameters: Django's cursors then leave a "%" in the DDL alone.
            cursor.execute(statement)
        cursor.execute(record, migration_record(migration))
        applied.append(migration.version)
    return applied

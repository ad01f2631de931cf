"""The outbox's own migrations, applied by Django's ``migrate`` in its connection.

The outbox ships its schema as versioned SQL files (``apitask/outbox/sql``)
and records what it applied in ``apitask_migrations``. Django migrations of
this app apply those same files (never a copy), up to a version each, and
record them there too: ``Outbox.migrate()`` and ``apitask outbox migrate``
then find nothing to do, and a database migrated either way is the same.
"""

from __future__ import annotations

from typing import Any

from ...outbox._migrate import apply_migrations
from ...outbox._sql import load_migrations, load_queries, pyformat
from ._database import dialect_of
from ._settings import load_settings

__all__ = ["apply_outbox_migrations", "drop_outbox_tables", "ours"]


def ours(connection: Any) -> bool:
    """True for the database of ``APITASK["DATABASE"]``: the only one given the tables."""
    return bool(connection.alias == load_settings().database)


def apply_outbox_migrations(connection: Any, upto: int) -> list[int]:
    """Apply the outbox migrations up to version ``upto`` that ``connection``'s
    database lacks, in its current transaction; return the versions applied."""
    # The outbox's SQL folders: "sqlite" and "postgres".
    dialect = dialect_of(connection.alias, connection.vendor).replace("postgresql", "postgres")
    queries = load_queries(dialect)
    with connection.cursor() as cursor:
        # Django's cursors take "%(name)s" on every backend.
        record = pyformat(queries["record_migration"])
        return apply_migrations(cursor, queries, load_migrations(dialect), record=record, upto=upto)


def drop_outbox_tables(connection: Any) -> None:
    """Undo :func:`apply_outbox_migrations` entirely (``migrate apitask zero``)."""
    with connection.cursor() as cursor:
        # The events first: on PostgreSQL they reference the jobs.
        cursor.execute("DROP TABLE IF EXISTS apitask_job_events")
        cursor.execute("DROP TABLE IF EXISTS apitask_jobs")
        cursor.execute("DROP TABLE IF EXISTS apitask_migrations")

"""Versioned migrations: numbered steps recorded in ``schema_migrations``.

``apitask-auth migrate`` applies the missing ones (dev mode does it at start),
then the apitask outbox's own. Step 1 builds the frozen copy in
:mod:`.schema_v1`; later steps bring a database to the live :mod:`.tables`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Integer, MetaData, Table, inspect, select, text
from sqlalchemy.schema import CreateIndex

# The outbox stores read their SQL files when imported: import them here, at
# start-up, rather than lazily from open_store() on the event loop.
import apitask.outbox.postgres
import apitask.outbox.sqlite  # noqa: F401
from apitask.outbox import Outbox, open_store
from apitask_auth.accounts import addresses
from apitask_auth.storage import schema_v1
from apitask_auth.storage.database_url import parse_database_url
from apitask_auth.storage.tables import (
    STALE_ROW_INDEXES,
    UTCDateTime,
    email_rate_limits,
    mfa_challenges,
    mfa_factors,
    now,
    refresh_tokens_parent_idx,
    sessions,
    sessions_factor_id_idx,
    users,
    users_aud_created_at_idx,
    users_email_partial_key,
    users_phone_change_idx,
    users_phone_partial_key,
    verify_attempts,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "MIGRATIONS",
    "migrate",
    "migrate_all",
    "schema_migrations",
    "schema_status",
    "schema_version",
]

# The bookkeeping table: one row per applied step. Its own metadata, so creating
# the live tables never creates it (the runner does, on first use).
schema_migrations = Table(
    "schema_migrations",
    MetaData(),
    Column("version", Integer, primary_key=True),
    Column("applied_at", UTCDateTime(), nullable=False),
)


def _initial_schema(connection: Connection) -> None:
    # The tables exactly as version 1 shipped them (a frozen copy): the live
    # definitions in tables.py carry what later steps add.
    schema_v1.create_v1_schema(connection)


def _email_rate_limits(connection: Connection) -> None:
    email_rate_limits.create(connection, checkfirst=False)


def _verify_attempts(connection: Connection) -> None:
    verify_attempts.create(connection, checkfirst=False)


def _one_account_per_address(connection: Connection) -> None:
    """The unique address index, and an index under every other look-up that lacked one.

    Stops with DuplicateAddressesError (the transaction rolls back: nothing changes)
    when existing rows already break the rule; it never drops or rewrites data.
    """
    if connection.dialect.name == "postgresql":
        # Writers wait from the check until the commit, so the index sees the rows the
        # check saw. (CREATE INDEX CONCURRENTLY cannot run in a transaction; building
        # the indexes on 1M users inside one took 9-14 s: docs/service.md says how to
        # build the indexes concurrently beforehand.)
        connection.exec_driver_sql("LOCK TABLE users IN SHARE MODE")
    found = connection.execute(text(addresses.DUPLICATES)).all()
    if found:
        raise addresses.DuplicateAddressesError([tuple(row) for row in found])
    # Nothing compares the raw address any more: the expression index replaces it.
    connection.exec_driver_sql("DROP INDEX IF EXISTS users_email_idx")
    for index in (users_email_partial_key, users_aud_created_at_idx, refresh_tokens_parent_idx):
        # An index an operator built beforehand (CONCURRENTLY, docs/service.md) is kept.
        connection.execute(CreateIndex(index, if_not_exists=True))


def _add_column(connection: Connection, column: Column[Any]) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for a live (nullable) column, typed by the backend."""
    kind = column.type.compile(dialect=connection.dialect)
    connection.exec_driver_sql(f"ALTER TABLE {column.table.name} ADD COLUMN {column.name} {kind}")


def _mfa(connection: Connection) -> None:
    """MFA factors and their challenges, and the factor that raised a session."""
    mfa_factors.create(connection, checkfirst=False)
    mfa_challenges.create(connection, checkfirst=False)
    _add_column(connection, sessions.c.factor_id)
    connection.execute(CreateIndex(sessions_factor_id_idx))


def _phone_changes(connection: Connection) -> None:
    """The columns of a pending phone change, one account per number, and the look-ups.

    No existing row can break the unique index: no earlier version stored a number.
    """
    for name in ("phone_change", "phone_change_token", "phone_change_sent_at"):
        _add_column(connection, users.c[name])
    for index in (users_phone_partial_key, users_phone_change_idx):
        connection.execute(CreateIndex(index))


def _stale_row_indexes(connection: Connection) -> None:
    """An index under each statement of the stale-row cleanup (storage/stale_rows.py).

    An index an operator built beforehand (CONCURRENTLY, docs/service.md) is kept.
    """
    for index in STALE_ROW_INDEXES:
        connection.execute(CreateIndex(index, if_not_exists=True))


# Append-only: a deployed step is never edited, later changes are new steps.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _initial_schema),
    (2, "global e-mail rate limit", _email_rate_limits),
    (3, "one account per address; an index under every look-up", _one_account_per_address),
    (4, "verify attempts per code", _verify_attempts),
    (5, "MFA factors and challenges; the factor behind a session", _mfa),
    (6, "phone sign-in: pending phone changes, one account per number", _phone_changes),
    (7, "an index under each statement of the stale-row cleanup", _stale_row_indexes),
]


async def schema_version(connection: AsyncConnection) -> int:
    """The highest applied migration (0 for an empty database)."""
    return max(await _applied(connection), default=0)


async def _applied(connection: AsyncConnection) -> set[int]:
    def _read(sync: Connection) -> set[int]:
        schema_migrations.create(sync, checkfirst=True)
        return set(sync.execute(select(schema_migrations.c.version)).scalars().all())

    return await connection.run_sync(_read)


async def migrate(engine: AsyncEngine) -> list[int]:
    """Apply every missing migration, each in the same transaction as its record.

    Returns:
        The versions applied now (empty when the schema was current).
    """
    applied: list[int] = []
    async with engine.begin() as connection:
        # By the set, not the highest: steps written on parallel branches may be
        # merged after a later number was applied (a database at 1-4 and 6 still
        # gets 5).
        done = await _applied(connection)
        for version, _name, step in MIGRATIONS:
            if version in done:
                continue
            await connection.run_sync(step)
            await connection.execute(
                schema_migrations.insert().values(version=version, applied_at=now())
            )
            applied.append(version)
    return applied


async def schema_status(engine: AsyncEngine, database_url: str) -> dict[str, tuple[int, int]]:
    """How far each schema is migrated, read without writing anything.

    Returns:
        ``(applied, latest)`` versions by schema (``"auth"``, ``"outbox"``);
        0 applied for a schema never migrated. For ``"auth"``, ``applied`` is the
        last step before the first one missing: a database that has 6 but not 5
        (merged later) is at 4, so it is not reported current.
    """

    def _read(sync: Connection) -> int:
        if not inspect(sync).has_table("schema_migrations"):
            return 0
        done = set(sync.execute(text("SELECT version FROM schema_migrations")).scalars())
        through = 0
        for version, _name, _step in MIGRATIONS:
            if version not in done:
                break
            through = version
        return through

    async with engine.connect() as connection:
        auth = await connection.run_sync(_read)
    # The outbox's own store reads its migration record (the same database).
    async with Outbox(open_store(parse_database_url(database_url).url)) as outbox:
        outbox_status = await outbox.schema_status()
    return {
        "auth": (auth, MIGRATIONS[-1][0]),
        "outbox": (outbox_status.current, outbox_status.latest),
    }


async def migrate_all(engine: AsyncEngine, database_url: str) -> dict[str, list[int]]:
    """Apply the service's migrations, then the apitask outbox's (same database).

    The outbox tables are created whatever the delivery mode, so switching to
    ``GOTRUE_MAILER_DELIVERY=outbox`` later needs no extra step.

    Returns:
        The versions applied now, by schema (``"auth"``, ``"outbox"``).
    """
    applied = {"auth": await migrate(engine)}
    async with Outbox(open_store(parse_database_url(database_url).url)) as outbox:
        applied["outbox"] = await outbox.migrate()
    return applied

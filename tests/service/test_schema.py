"""The schema: migrations reach exactly the declared tables, and migration 3 (one
account per address) on a populated database, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import CreateIndex

from apitask_auth.accounts.addresses import RESOLVE_DUPLICATES, DuplicateAddressesError
from apitask_auth.cli import main
from apitask_auth.storage import migrations
from apitask_auth.storage.migrations import MIGRATIONS, migrate, schema_migrations, schema_version
from apitask_auth.storage.tables import metadata, now, users, users_email_partial_key

from ._schema import engine_for, fresh_database, snapshot, user_row

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def server(request: pytest.FixtureRequest) -> str | None:
    """The PostgreSQL server's URL for the postgres runs, None for SQLite."""
    if "postgres" not in request.node.name:
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.mark.parametrize("kind", BACKENDS)
async def test_migrated_schema_is_the_declared_schema(
    kind: str, tmp_path: Path, server: str | None
) -> None:
    """A fresh database migrated to the head has exactly the tables, columns, indexes
    and constraints that the Table objects declare (migration 1 is a frozen copy of
    version 1, so this catches a later change that has no migration)."""
    async with (
        fresh_database(kind, tmp_path, server) as migrated_url,
        fresh_database(kind, tmp_path, server) as declared_url,
        engine_for(migrated_url) as migrated,
        engine_for(declared_url) as declared,
    ):
        assert await migrate(migrated) == [version for version, _, _ in MIGRATIONS]
        async with declared.begin() as conn:
            await conn.run_sync(metadata.create_all)
        async with migrated.connect() as a, declared.connect() as b:
            assert await snapshot(a) == await snapshot(b)


async def _populate_version_2(engine: AsyncEngine, rows: list[dict[str, object]]) -> None:
    """Migrate to version 2 (as a database made before migration 3 was), then add rows."""
    async with engine.begin() as conn:
        assert await schema_version(conn) == 0  # creates the bookkeeping table
        for version, _name, step in MIGRATIONS[:2]:
            await conn.run_sync(step)
            await conn.execute(schema_migrations.insert().values(version=version, applied_at=now()))
        await conn.execute(users.insert(), rows)


@pytest.mark.parametrize("kind", BACKENDS)
async def test_migration_3_stops_on_duplicates_and_changes_nothing(
    kind: str, tmp_path: Path, server: str | None
) -> None:
    """Two accounts whose addresses differ only in case, in one audience, stop
    migration 3 with a message naming the address and the resolving query; the schema
    and the rows stay as they were. The documented query then keeps the confirmed
    account's address, moves the other's aside (no row deleted), and the migration
    passes. Same address in another audience, SSO accounts and no address are allowed."""
    kept = user_row("Race@Example.com", confirmed=True, age=2)
    other = user_row("race@example.com", confirmed=False, age=1)
    allowed = [
        user_row("race@example.com", aud="other-audience"),
        user_row("race@example.com", sso=True),
        user_row("RACE@example.com", sso=True),
        user_row(None),
        user_row(None),
        user_row("solo@example.com"),
    ]
    rows = [other, kept, *allowed]
    async with (
        fresh_database(kind, tmp_path, server) as url,
        engine_for(url) as engine,
    ):
        await _populate_version_2(engine, rows)
        async with engine.connect() as conn:
            before = await snapshot(conn)
        with pytest.raises(DuplicateAddressesError) as stopped:
            await migrate(engine)
        assert stopped.value.duplicates == [("race@example.com", "authenticated", 2)]
        message = str(stopped.value)
        assert "race@example.com (aud 'authenticated': 2 accounts)" in message
        assert RESOLVE_DUPLICATES in message
        assert "nothing was changed" in message
        async with engine.connect() as conn:
            assert await snapshot(conn) == before
            assert await schema_version(conn) == 2
            unchanged = (await conn.execute(select(users.c.id, users.c.email))).all()
        assert dict(unchanged) == {row["id"]: row["email"] for row in rows}

        async with engine.begin() as conn:
            await conn.execute(text(RESOLVE_DUPLICATES))
        assert await migrate(engine) == [v for v, _, _ in MIGRATIONS if v >= 3]
        async with engine.connect() as conn:
            emails = dict((await conn.execute(select(users.c.id, users.c.email))).all())
            assert (
                await conn.execute(select(func.count()).select_from(users))
            ).scalar_one() == len(rows)
        assert emails[kept["id"]] == "Race@Example.com"
        assert emails[other["id"]] == f"race@example.com.duplicate-{other['id']}.invalid"
        assert all(emails[row["id"]] == row["email"] for row in allowed)


@pytest.mark.no_blockbuster  # a CLI test: the command runs its own event loop
def test_migrate_command_reports_duplicates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`apitask-auth migrate` on a database with duplicate addresses exits 1 with the
    message on stderr, not a traceback."""
    url = f"sqlite:///{tmp_path / 'auth.db'}"

    async def populate() -> None:
        async with engine_for(url) as engine:
            rows = [user_row("dup@example.com"), user_row("DUP@example.com")]
            await _populate_version_2(engine, rows)

    asyncio.run(populate())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("GOTRUE_SITE_URL", "http://localhost:3000")
    monkeypatch.setenv("API_EXTERNAL_URL", "http://localhost:9999")
    monkeypatch.setenv("GOTRUE_JWT_SECRET", "s" * 32)
    assert main(["migrate"]) == 1
    captured = capsys.readouterr()
    assert "dup@example.com (aud 'authenticated': 2 accounts)" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("kind", BACKENDS)
async def test_migration_3_keeps_indexes_built_beforehand(
    kind: str, tmp_path: Path, server: str | None
) -> None:
    """An operator may build the new indexes first (CONCURRENTLY on PostgreSQL, as
    docs/service.md shows): migration 3 keeps them and reaches the declared schema."""
    async with (
        fresh_database(kind, tmp_path, server) as url,
        fresh_database(kind, tmp_path, server) as declared_url,
        engine_for(url) as engine,
        engine_for(declared_url) as declared,
    ):
        await _populate_version_2(engine, [user_row("solo@example.com")])
        if kind == "postgres":  # outside a transaction, as an operator would
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql(
                    "CREATE UNIQUE INDEX CONCURRENTLY users_email_partial_key "
                    "ON users (lower(email), aud) WHERE is_sso_user = false"
                )
        else:
            async with engine.begin() as conn:
                await conn.execute(CreateIndex(users_email_partial_key))
        assert await migrate(engine) == [v for v, _, _ in MIGRATIONS if v >= 3]
        async with declared.begin() as conn:
            await conn.run_sync(metadata.create_all)
        async with engine.connect() as a, declared.connect() as b:
            assert await snapshot(a) == await snapshot(b)


def test_duplicates_message_names_twenty_and_counts_the_rest() -> None:
    """A long list of duplicates is cut at 20 addresses; the rest are counted."""
    found = [(f"a{n:02}@example.com", "authenticated", 2) for n in range(23)]
    message = str(DuplicateAddressesError(found))
    assert "23 address(es)" in message
    assert "a19@example.com" in message
    assert "a20@example.com" not in message
    assert "and 3 more" in message


@pytest.mark.parametrize("kind", BACKENDS)
async def test_migration_6_keeps_users_and_allows_one_account_per_number(
    kind: str, tmp_path: Path, server: str | None
) -> None:
    before = [step for step in MIGRATIONS if step[0] < 6]
    async with fresh_database(kind, tmp_path, server) as url, engine_for(url) as engine:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(migrations, "MIGRATIONS", before)
            assert await migrate(engine) == [version for version, _, _ in before]
        first = user_row("a@example.com")
        async with engine.begin() as conn:
            await conn.execute(users.insert().values(first))
        assert await migrate(engine) == [version for version, _, _ in MIGRATIONS if version >= 6]
        async with engine.begin() as conn:
            row = (await conn.execute(select(users).where(users.c.id == first["id"]))).one()
            assert (row.email, row.phone_change, row.phone_change_token) == (
                "a@example.com",
                None,
                None,
            )
            await conn.execute(users.update().values(phone="15550100"))
        second = user_row("b@example.com") | {"phone": "15550100"}
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(users.insert().values(second))
        async with engine.begin() as conn:  # another audience may have the number
            await conn.execute(users.insert().values(second | {"aud": "other"}))


async def test_a_lower_step_merged_later_is_still_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps written on parallel branches (MFA's 5, this 6): a database that has 6
    still gets 5 once it ships."""
    async with fresh_database("sqlite", tmp_path, None) as url, engine_for(url) as engine:
        assert await migrate(engine) == [version for version, _, _ in MIGRATIONS]
        # As if this database had been migrated by the branch without step 5.
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DELETE FROM schema_migrations WHERE version = 5")
        ran: list[int] = []

        def late_step(connection: Connection) -> None:
            ran.append(5)

        steps = [step for step in MIGRATIONS if step[0] != 5] + [(5, "late", late_step)]
        monkeypatch.setattr(migrations, "MIGRATIONS", sorted(steps))
        status = await migrations.schema_status(engine, url)
        assert status["auth"] == (4, MIGRATIONS[-1][0])  # not current: 5 is missing
        assert await migrate(engine) == [5]
        assert (await migrations.schema_status(engine, url))["auth"][0] == MIGRATIONS[-1][0]
        assert ran == [5]
        assert await migrate(engine) == []

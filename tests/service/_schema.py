"""Helpers for the schema tests: fresh databases, a schema snapshot, user rows."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text

from apitask_auth.storage.db import create_engine

from .conftest import _admin_sql

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@contextlib.asynccontextmanager
async def fresh_database(kind: str, tmp_path: Path, postgres_url: str | None) -> AsyncIterator[str]:
    """The URL of an empty database of ``kind`` ("sqlite" or "postgres"), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"
        return
    assert postgres_url is not None
    name = f"apitask_auth_schema_{uuid.uuid4().hex[:12]}"
    await _admin_sql(postgres_url, f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    finally:
        await _admin_sql(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def engine_for(url: str) -> AsyncIterator[AsyncEngine]:
    """The service's engine for ``url``, disposed afterwards."""
    # Building the engine touches the file system (SQLite paths): off the loop.
    engine = await asyncio.to_thread(create_engine, url)
    try:
        yield engine
    finally:
        await engine.dispose()


def _squash(sql: str | None) -> str:
    return re.sub(r"\s+", " ", sql or "").replace("( ", "(").replace(" )", ")").strip()


async def snapshot(conn: AsyncConnection) -> set[tuple[Any, ...]]:
    """Every table, column, index and constraint of the database, as comparable rows
    (the bookkeeping table ``schema_migrations`` left out)."""
    if conn.dialect.name == "sqlite":
        rows = await conn.execute(
            text(
                "SELECT type, name, tbl_name, sql FROM sqlite_master "
                "WHERE name NOT LIKE 'sqlite_%' AND tbl_name != 'schema_migrations'"
            )
        )
        return {(kind, name, table, _squash(sql)) for kind, name, table, sql in rows}
    columns = await conn.execute(
        text(
            "SELECT 'column', table_name, column_name, data_type, character_maximum_length, "
            "is_nullable, column_default FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name != 'schema_migrations'"
        )
    )
    indexes = await conn.execute(
        text(
            "SELECT 'index', tablename, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = 'public' AND tablename != 'schema_migrations'"
        )
    )
    constraints = await conn.execute(
        text(
            "SELECT 'constraint', t.relname, c.conname, pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = 'public' AND t.relname != 'schema_migrations'"
        )
    )
    return {tuple(row) for result in (columns, indexes, constraints) for row in result}


USER_COLUMNS = (
    "id",
    "aud",
    "role",
    "email",
    "encrypted_password",
    "email_confirmed_at",
    "raw_app_meta_data",
    "raw_user_meta_data",
    "created_at",
    "updated_at",
    "email_change_confirm_status",
    "is_anonymous",
    "is_sso_user",
)
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def user_row(
    email: str | None,
    *,
    aud: str = "authenticated",
    confirmed: bool = True,
    sso: bool = False,
    age: int = 0,
) -> dict[str, Any]:
    """A ``users`` row as the service writes one; ``age`` orders creation times."""
    at = _EPOCH + timedelta(seconds=age)
    return {
        "id": str(uuid.uuid4()),
        "aud": aud,
        "role": "authenticated",
        "email": email,
        "encrypted_password": "$2a$10$" + "x" * 53,
        "email_confirmed_at": at if confirmed else None,
        "raw_app_meta_data": {"provider": "email", "providers": ["email"]},
        "raw_user_meta_data": {},
        "created_at": at,
        "updated_at": at,
        "email_change_confirm_status": 0,
        "is_anonymous": False,
        "is_sso_user": sso,
    }

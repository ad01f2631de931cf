"""On PostgreSQL, Django's ``migrate`` makes exactly the outbox's declared schema."""

from __future__ import annotations

import pytest

from apitask.outbox._sql import load_migrations, load_schema

from .project import drop_postgres_database, fresh_postgres_database, manage

pytestmark = pytest.mark.postgres


def describe(conn: object, schema: str) -> object:
    """Columns (with defaults), indexes and constraints of ``schema``'s outbox tables."""
    run = conn.execute  # type: ignore[attr-defined]
    tables = ["apitask_jobs", "apitask_job_events"]
    columns = run(
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = ANY(%s) ORDER BY table_name, ordinal_position",
        (schema, tables),
    ).fetchall()
    indexes = run(
        "SELECT indexname, replace(indexdef, %s, 'S') FROM pg_indexes "
        "WHERE schemaname = %s AND tablename = ANY(%s) ORDER BY indexname",
        (f"{schema}.", schema, tables),
    ).fetchall()
    constraints = run(
        # A foreign key names its table with the schema when it is off the search_path.
        "SELECT t.relname, conname, replace(pg_get_constraintdef(c.oid), %s, '') "
        "FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace JOIN pg_class t ON t.oid = c.conrelid "
        "WHERE n.nspname = %s AND t.relname = ANY(%s) ORDER BY t.relname, conname",
        (f"{schema}.", schema, tables),
    ).fetchall()
    defaults = [(*c[:4], (c[4] or "").replace(f"{schema}.", "")) for c in columns]
    return defaults, indexes, constraints


def test_django_migrate_makes_the_declared_postgres_schema(postgres_url: str) -> None:
    import psycopg

    url, name = fresh_postgres_database(postgres_url)
    try:
        migrated = manage(url, "migrate", "apitask")
        assert migrated.returncode == 0, migrated.stderr
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA declared")
            conn.execute("SET search_path TO declared")
            for statement in load_schema("postgres"):
                conn.execute(statement)
            applied = conn.execute("SELECT version FROM public.apitask_migrations ORDER BY 1")
            assert [row[0] for row in applied] == [m.version for m in load_migrations("postgres")]
            by_django = describe(conn, "public")
            assert by_django == describe(conn, "declared")
            assert {c[0] for c in by_django[0]} == {"apitask_jobs", "apitask_job_events"}  # type: ignore[index]
    finally:
        drop_postgres_database(postgres_url, name)

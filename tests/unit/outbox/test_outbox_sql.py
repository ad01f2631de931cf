"""The SQL files: named queries, parameters for asyncpg, migrations."""

from __future__ import annotations

import pytest

from apitask.outbox._sql import (
    load_migrations,
    load_queries,
    numbered,
    parse_migrations,
    split_statements,
)


def test_every_dialect_has_the_same_named_queries() -> None:
    """Both stores answer the same questions (PostgreSQL adds its migration lock
    and the planner's estimates of the counts, SQLite a cheaper insert for jobs
    without an idempotency key, and the statements that keep a job's history,
    which PostgreSQL runs inside the changes they record or by ON DELETE CASCADE)."""
    postgres, sqlite = set(load_queries("postgres")), set(load_queries("sqlite"))
    assert postgres - sqlite == {"migrations_lock", "state_estimates"}
    history = {"log_events", "trim_events", "reap_events", "succeed_delete_events", "purge_events"}
    assert sqlite - postgres == {"insert_unkeyed"} | history
    assert not any(q.lstrip().startswith("--") for q in load_queries("sqlite").values())


def test_numbered_parameters_skip_casts_and_repeat_numbers() -> None:
    """:name becomes $n in order of first use; PostgreSQL casts (::) are left alone."""
    sql, names = numbered("SELECT :a::text, :b, :a WHERE x = ANY(:ids::bigint[])")
    assert sql == "SELECT $1::text, $2, $1 WHERE x = ANY($3::bigint[])"
    assert names == ("a", "b", "ids")


def test_scripts_split_into_statements_without_comments() -> None:
    """Comments and empty statements are dropped."""
    assert split_statements("-- c\nCREATE TABLE a (x int);\n\n;CREATE INDEX i ON a (x);") == (
        "CREATE TABLE a (x int)",
        "CREATE INDEX i ON a (x)",
    )


def test_migrations_are_ordered_and_well_named() -> None:
    """Versions come from NNNN_ prefixes; bad names and duplicates are refused."""
    assert [m.version for m in load_migrations("sqlite")] == [1, 2, 3, 4, 5]
    assert [m.version for m in load_migrations("postgres")] == [1, 2, 3, 4, 5]
    parsed = parse_migrations([("0002_b.sql", "SELECT 2"), ("0001_a.sql", "SELECT 1")])
    assert [(m.version, m.name, m.statements) for m in parsed] == [
        (1, "a", ("SELECT 1",)),
        (2, "b", ("SELECT 2",)),
    ]
    with pytest.raises(ValueError, match=r"not named NNNN_name\.sql"):
        parse_migrations([("initial.sql", "")])
    with pytest.raises(ValueError, match="two migrations have version 1"):
        parse_migrations([("0001_a.sql", ""), ("0001_b.sql", "")])

"""Loading the SQL files: named queries, the declared schema, migrations.

The text comes from files in this package, never from input, so it is typed
``LiteralString`` at the port (mypy treats that as ``str`` for now).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, LiteralString

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "Migration",
    "load_migrations",
    "load_queries",
    "load_schema",
    "numbered",
    "parse_migrations",
    "pyformat",
    "split_statements",
]

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# ":name" but not the "::" of a PostgreSQL cast.
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_MIGRATION = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned schema change: ``migrations/<version>_<name>.sql``."""

    version: int
    name: str
    statements: tuple[LiteralString, ...]


def _text(dialect: str, *parts: str) -> str:
    return resources.files(__package__).joinpath("sql", dialect, *parts).read_text("utf-8")


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def split_statements(sql: str) -> tuple[LiteralString, ...]:
    """The statements of a script (our DDL has no ``;`` inside literals)."""
    parts = (part.strip() for part in _strip_comments(sql).split(";"))
    return tuple(part for part in parts if part)


def load_queries(dialect: str) -> dict[str, LiteralString]:
    """The named queries of ``sql/<dialect>/queries.sql``, comments removed."""
    text = _text(dialect, "queries.sql")
    chunks = _NAME.split(text)[1:]
    return {
        name: _strip_comments(body).strip()
        for name, body in zip(chunks[::2], chunks[1::2], strict=True)
    }


def load_schema(dialect: str) -> tuple[LiteralString, ...]:
    """The statements of the declared schema, ``sql/<dialect>/schema.sql``."""
    return split_statements(_text(dialect, "schema.sql"))


def load_migrations(dialect: str) -> list[Migration]:
    """Every migration of ``dialect``, in version order."""
    folder = resources.files(__package__).joinpath("sql", dialect, "migrations")
    return parse_migrations(
        (entry.name, entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )


def parse_migrations(files: Iterable[tuple[str, str]]) -> list[Migration]:
    """Migrations from ``(file name, text)`` pairs, in version order.

    Raises:
        ValueError: a name is not ``NNNN_name.sql``, or two share a version.
    """
    migrations: dict[int, Migration] = {}
    for name, text in files:
        match = _MIGRATION.match(name)
        if match is None:
            raise ValueError(f"migration file {name!r} is not named NNNN_name.sql")
        version = int(match[1])
        if version in migrations:
            raise ValueError(f"two migrations have version {version}")
        migrations[version] = Migration(version, match[2], split_statements(text))
    return [migrations[v] for v in sorted(migrations)]


def numbered(query: str) -> tuple[LiteralString, tuple[str, ...]]:
    """Rewrite ``:name`` parameters as ``$1, $2...`` (asyncpg) and return their order."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match[1]
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _PARAM.sub(number, query), tuple(order)


@functools.cache  # a handful of statements, rewritten once each
def pyformat(query: str) -> LiteralString:
    """Rewrite ``:name`` parameters as ``%(name)s`` (psycopg, Django's cursors).

    A ``%`` already in the text is doubled first, as that style requires.
    """
    return _PARAM.sub(r"%(\1)s", query.replace("%", "%%"))

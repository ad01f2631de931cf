"""DATABASE_URL as GoTrue deployments write it, and the start on a database not ready.

The command runs for real (``apitask-auth`` in a subprocess, as an operator runs
it) against the real PostgreSQL and SQLite files: libpq's ``?sslmode=disable``
works for ``migrate`` and ``serve``; a URL the service cannot use, a server it
cannot reach and a schema that is behind each stop the start with one line.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from acceptance._uvicorn import free_port, running_server
from apitask.outbox._sql import load_migrations
from apitask_auth.cli import main
from apitask_auth.storage.database_url import SSL_MODES, parse_database_url
from apitask_auth.storage.migrations import MIGRATIONS

from .conftest import _admin_sql

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

COMMAND = [sys.executable, "-m", "apitask_auth.cli"]
# The versions a database migrated by this code is at (the refusal names them).
AUTH_LATEST = MIGRATIONS[-1][0]
OUTBOX_LATEST = max(migration.version for migration in load_migrations("sqlite"))
pytestmark = pytest.mark.no_blockbuster  # subprocesses, each with its own loop


def _environment(database_url: str) -> dict[str, str]:
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GOTRUE_") and key not in {"API_EXTERNAL_URL", "DATABASE_URL"}
    }
    return base | {
        "DATABASE_URL": database_url,
        "GOTRUE_SITE_URL": "http://localhost:3000",
        "API_EXTERNAL_URL": "http://localhost:9999",
        "GOTRUE_JWT_SECRET": "database-url-test-secret-long-enough-for-hs256",
    }


def _run(database_url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        env=_environment(database_url),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def empty_postgres(postgres_url: str) -> Iterator[str]:
    """A database of this test's own, empty, as libpq writes it (postgres://, sslmode)."""
    name = f"apitask_auth_url_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_sql(postgres_url, f'CREATE DATABASE "{name}"'))
    parts = urlsplit(postgres_url)
    try:
        yield urlunsplit(parts._replace(scheme="postgres", path=f"/{name}"))
    finally:
        asyncio.run(_admin_sql(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- the parser ---------------------------------------------------------------


@pytest.mark.parametrize("mode", SSL_MODES)
def test_every_libpq_sslmode_is_accepted_and_kept_for_asyncpg(mode: str) -> None:
    """asyncpg reads sslmode as libpq does, so the DSN keeps it."""
    parsed = parse_database_url(f"postgres://u:p%40ss@db:5432/postgres?sslmode={mode}")
    assert parsed.backend == "postgresql"
    assert parsed.url == f"postgresql://u:p%40ss@db:5432/postgres?sslmode={mode}"
    assert parsed.connect_timeout is None


def test_connect_timeout_leaves_the_dsn_and_follows_libpq() -> None:
    """connect_timeout is no server setting (asyncpg would send it as one): it becomes
    the connect timeout; libpq's floor of 2 s and 0 = no limit of ours."""
    parsed = parse_database_url(
        "postgresql://db/app?application_name=auth&connect_timeout=10&search_path=auth"
    )
    assert parsed.url == "postgresql://db/app?application_name=auth&search_path=auth"
    assert parsed.connect_timeout == 10
    assert parse_database_url("postgres://db/app?connect_timeout=1").connect_timeout == 2
    assert parse_database_url("postgres://db/app?connect_timeout=0").connect_timeout is None


def test_sqlite_urls_are_kept() -> None:
    assert parse_database_url("sqlite:///./auth.db").url == "sqlite:///./auth.db"
    assert parse_database_url("sqlite+aiosqlite:////tmp/a.db").url == "sqlite:////tmp/a.db"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://db/app", "expected a sqlite:///path or postgres://"),
        ("db/app", "expected a sqlite:///path or postgres://"),
        ("postgres://db/app?sslmode=on", "sslmode must be one of disable, allow"),
        ("postgres://db/app?pool_max_conns=4", "unknown query parameter 'pool_max_conns'"),
        (
            "postgres://db/app?sslmode=allow&sslmode=require",
            "query parameter 'sslmode' given twice",
        ),
        ("postgres://db/app?connect_timeout=soon", "connect_timeout must be a whole number"),
        ("postgres://db/app?sslmode", "the query string is malformed"),
        ("sqlite:///a.db?mode=ro", "a sqlite URL takes no query parameters"),
    ],
)
def test_urls_the_service_cannot_use_are_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match="^" + problem.replace("?", r"\?")):
        parse_database_url(url)


# -- the command, for real -----------------------------------------------------


@pytest.mark.postgres
def test_migrate_and_serve_accept_supabase_compose_style_urls(
    empty_postgres: str, tmp_path: Path
) -> None:
    """`postgres://...?sslmode=disable` (Supabase's compose files) migrates, and `serve`
    on it answers a real request (it answered 500 to everything before)."""
    url = f"{empty_postgres}?sslmode=disable&application_name=apitask-auth&connect_timeout=5"
    migrated = _run(url, "migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.splitlines() == [
        f"auth: applied migrations: {[version for version, _, _ in MIGRATIONS]}",
        f"outbox: applied migrations: {list(range(1, OUTBOX_LATEST + 1))}",
    ]

    async def serve() -> None:
        environment = _environment(url) | {
            "GOTRUE_MAILER_AUTOCONFIRM": "true",
            "PORT": str(free_port()),
        }
        command = [*COMMAND, "serve"]
        async with (
            running_server(command, env=environment, cwd=tmp_path) as base_url,
            httpx.AsyncClient(base_url=base_url, verify=False) as http,
        ):
            signup = await http.post(
                "/signup", json={"email": "compose@example.com", "password": "secret-42"}
            )
            assert signup.status_code == 200, signup.text
            assert signup.json()["user"]["email"] == "compose@example.com"

    asyncio.run(serve())


def _one_line_error(returncode: int, stderr: str) -> str:
    assert returncode != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("command", "url", "said"),
    [
        ("migrate", "postgres://u:secret@db/app?sslmode=yes", "sslmode must be one of"),
        # Nothing listens on port 1: refused at once.
        ("serve", "postgres://u:secret@127.0.0.1:1/app?sslmode=disable", "cannot use the database"),
    ],
)
def test_an_unusable_url_stops_the_real_command_with_one_line(
    command: str, url: str, said: str, tmp_path: Path
) -> None:
    """One line on stderr naming DATABASE_URL and why, never the password, exit non-zero
    (a bad sslmode was an 85-line traceback)."""
    result = _run(url, command, cwd=tmp_path)
    line = _one_line_error(result.returncode, result.stderr)
    assert "DATABASE_URL" in line
    assert said in line
    assert "secret" not in line


def _main(
    url: str, command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """The command in this process (each start costs seconds as a subprocess): its one line."""
    for name, value in _environment(url).items():
        monkeypatch.setenv(name, value)
    returncode = main([command])
    return _one_line_error(returncode, capsys.readouterr().err)


@pytest.mark.parametrize("command", ["migrate", "serve"])
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://u:secret@db/app", "expected a sqlite:///path or postgres://"),
        ("postgres://u:secret@db/app?sslmode=yes", "sslmode must be one of"),
        ("postgres://u:secret@db/app?pool_max_conns=4", "unknown query parameter"),
        ("postgres://u:secret@127.0.0.1:1/app?sslmode=disable", "cannot use the database"),
        ("sqlite:////nonexistent-directory/auth.db", "cannot use the database"),
    ],
)
def test_every_unusable_url_is_one_line_for_both_commands(
    command: str,
    url: str,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    line = _main(url, command, monkeypatch, capsys)
    assert line.startswith("apitask-auth: ")
    assert "DATABASE_URL" in line
    assert said in line
    assert "secret" not in line


@pytest.mark.postgres
def test_a_missing_postgres_database_is_one_line(
    empty_postgres: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _main(f"{empty_postgres}_gone", "migrate", monkeypatch, capsys)
    assert line.startswith("apitask-auth: DATABASE_URL: cannot use the database")
    assert "does not exist" in line


# -- serve on a database that is not migrated -----------------------------------


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'auth.db'}"


async def _execute(url: str, *statements: str) -> None:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            for statement in statements:
                connection.execute(statement)
        return
    for statement in statements:
        await _admin_sql(url.replace("postgres://", "postgresql://", 1), statement)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    url: str = request.getfixturevalue("empty_postgres")
    return url


def test_serve_refuses_an_empty_database(
    fresh_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It used to start, answer /health, then 500 to every request."""
    monkeypatch.chdir(tmp_path)
    assert _main(fresh_database, "serve", monkeypatch, capsys) == (
        "apitask-auth: the database at DATABASE_URL is not migrated (auth schema at "
        f"version 0 of {AUTH_LATEST}, outbox schema at version 0 of {OUTBOX_LATEST}): "
        "run `apitask-auth migrate` first"
    )


@pytest.mark.parametrize(
    ("undo", "behind"),
    [
        (
            [f"DELETE FROM schema_migrations WHERE version = {AUTH_LATEST}"],
            f"auth schema at version {AUTH_LATEST - 1} of {AUTH_LATEST}",
        ),
        (
            [f"DELETE FROM apitask_migrations WHERE version = {OUTBOX_LATEST}"],
            f"outbox schema at version {OUTBOX_LATEST - 1} of {OUTBOX_LATEST}",
        ),
    ],
)
def test_serve_refuses_a_database_one_migration_behind(
    fresh_database: str,
    tmp_path: Path,
    undo: list[str],
    behind: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A schema one step behind (the code was upgraded, `migrate` not run) is named."""
    monkeypatch.chdir(tmp_path)
    for name, value in _environment(fresh_database).items():
        monkeypatch.setenv(name, value)
    assert main(["migrate"]) == 0
    capsys.readouterr()
    asyncio.run(_execute(fresh_database, *undo))
    line = _main(fresh_database, "serve", monkeypatch, capsys)
    assert f"not migrated ({behind}): run `apitask-auth migrate` first" in line

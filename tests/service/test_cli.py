"""The command line: migrate, configuration errors, worker availability."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from apitask_auth.cli import main

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A complete configuration pointing at a fresh SQLite file."""
    database = tmp_path / "auth.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("GOTRUE_SITE_URL", "http://localhost:3000")
    monkeypatch.setenv("API_EXTERNAL_URL", "http://localhost:9999")
    monkeypatch.setenv("GOTRUE_JWT_SECRET", "s" * 32)
    return database


@pytest.mark.no_blockbuster  # a CLI test: the command runs its own event loop
def test_migrate_creates_the_schema_once(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`apitask-auth migrate` applies versions 1 and 2, then reports nothing to do."""
    assert main(["migrate"]) == 0
    assert "applied migrations: [1, 2]" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "none (schema is current)" in capsys.readouterr().out
    with sqlite3.connect(env) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
    assert {"users", "identities", "one_time_tokens", "sessions", "refresh_tokens"} <= tables
    assert {"flow_state", "audit_log_entries", "schema_migrations"} <= tables


def test_configuration_error_exits_2(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad variable is one clear line naming it, and exit status 2."""
    monkeypatch.setenv("GOTRUE_JWT_EXP", "soon")
    assert main(["serve"]) == 2
    assert "configuration error: GOTRUE_JWT_EXP:" in capsys.readouterr().err


def test_worker_says_it_is_unavailable(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Until the outbox lands, `worker` says so instead of idling."""
    assert main(["worker"]) == 2
    assert "not available" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GOTRUE_MAILER_DELIVERY", "pool"),
        ("GOTRUE_MAILER_DELIVERY", "outbox"),
        ("GOTRUE_WORKER_ENABLED", "true"),
    ],
)
def test_unavailable_delivery_modes_refuse_to_start(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    """Until the pool and outbox land, asking for them stops the server with a clear line."""
    monkeypatch.setenv(variable, value)
    assert main(["serve"]) == 2
    assert f"configuration error: {variable}: delivery mode" in capsys.readouterr().err

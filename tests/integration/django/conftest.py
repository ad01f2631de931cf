"""A real Django project (djsite/) in this process, on a SQLite file, and helpers for
running it in others (manage.py, gunicorn) on SQLite or a fresh PostgreSQL database."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from smtp_sink import Sink  # noqa: E402 - needs the path above


@pytest.fixture(scope="session")
def django_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Django set up in this process on a migrated SQLite file; its path."""
    import django
    from django.core.management import call_command

    db = tmp_path_factory.mktemp("djsite") / "site.db"
    os.environ["DJSITE_DATABASE"] = f"sqlite:///{db}"
    os.environ["DJSITE_OTHER_DATABASE"] = f"sqlite:///{db}.other"
    os.environ["DJANGO_SETTINGS_MODULE"] = "djsite.settings"
    django.setup()
    call_command("migrate", verbosity=0)
    return db


@pytest.fixture
def django_db(django_sqlite: Path) -> Iterator[Path]:
    """Empty tables and fresh threads for each test (the threads hold mail backends)."""
    from django.db import connection

    from apitask.contrib.django._outbox import reset
    from apitask.contrib.django._threads import shutdown_threads

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM apitask_jobs")
        cursor.execute("DELETE FROM signups_signup")
    yield django_sqlite
    shutdown_threads()
    reset()


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as server:
        yield server


def fresh_postgres_database(admin_url: str) -> tuple[str, str]:
    """Create a database of our own on the test server; return (its URL, its name)."""
    import psycopg

    name = f"apitask_dj_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}", name


def drop_postgres_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def project_env(database: str, **extra: str) -> dict[str, str]:
    """The environment of a process running the test project."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(DJSITE_DATABASE=database, PYTHONPATH=str(HERE), **extra)
    return env


def manage(database: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py args`` of the test project in its own process."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=HERE,
        env=project_env(database, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

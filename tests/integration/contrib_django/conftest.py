"""A real Django project (djsite/) in this process, on a SQLite file, and helpers for
running it in others (manage.py, gunicorn) on SQLite or a fresh PostgreSQL database."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

from .project import HERE, drop_postgres_database, fresh_postgres_database, manage

if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from smtp_sink import Sink


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def project_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database for the project in other processes: a SQLite file, or a
    PostgreSQL database of the test's own (dropped after)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/site.db"
        migrated = manage(url, "migrate", DJSITE_OTHER_DATABASE=f"sqlite:///{tmp_path}/o.db")
        assert migrated.returncode == 0, migrated.stderr
        yield url
        return
    admin = request.getfixturevalue("postgres_url")
    url, name = fresh_postgres_database(admin)
    try:
        migrated = manage(url, "migrate", DJSITE_OTHER_DATABASE=f"sqlite:///{tmp_path}/o.db")
        assert migrated.returncode == 0, migrated.stderr
        yield url
    finally:
        drop_postgres_database(admin, name)

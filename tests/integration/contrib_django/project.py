"""Running the test project (djsite/) in other processes: manage.py, gunicorn, and a
PostgreSQL database of a test's own."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


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


class Gunicorn:
    """gunicorn serving the project with sync workers, on a free port."""

    def __init__(self, database: str, workers: int = 2, **env: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                str(workers),
                "--worker-class",
                "sync",
                "--bind",
                "127.0.0.1:0",
                "--no-control-socket",
                "--graceful-timeout",
                "5",
                "djsite.wsgi:application",
            ],
            cwd=HERE,
            env=project_env(database, **env),
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: kill() reaches every worker
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "Listening at: http://" in line:
                self.url = line.split("Listening at: ")[1].split()[0]
                break
        else:  # pragma: no cover - only when gunicorn cannot start
            raise RuntimeError("gunicorn exited before listening")
        booted = 0
        for line in self.process.stderr:  # answer only once every worker is up
            booted += "Booting worker" in line
            if booted == workers:
                break

    def kill(self) -> None:
        """SIGKILL the master and its workers at once (a crash, not a shutdown)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        assert self.process.stderr is not None
        self.process.stderr.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        assert self.process.stderr is not None
        self.process.stderr.close()

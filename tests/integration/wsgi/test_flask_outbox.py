"""Flask + Flask-SQLAlchemy served by werkzeug's real server, the sign-up mail written
in the view's transaction, sent by the plain ``apitask worker`` to a real SMTP server."""

from __future__ import annotations

import asyncio
import importlib
import os
import secrets
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller
from werkzeug.serving import make_server

from apitask.outbox import open_outbox

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# Found through the path set just above (as the worker subprocess finds it).
flask_outbox_app: Any = importlib.import_module("flask_outbox_app")


class Inbox:
    """aiosmtpd handler: keeps each accepted message's recipients and Message-ID."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    monkeypatch.setenv("FLASK_TEST_SMTP_PORT", str(controller.port))
    flask_outbox_app.mailer.cache_clear()
    try:
        yield handler
    finally:
        controller.stop()
        flask_outbox_app.mailer.cache_clear()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """A SQLAlchemy URL for the app and the outbox, and the PostgreSQL schema to use."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}", None
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"apitask_flask_test_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield url.replace("postgresql://", "postgresql+psycopg://"), schema
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def served(database: tuple[str, str | None]) -> Iterator[tuple[str, Any]]:
    """The app behind werkzeug's threaded server; (base URL, app)."""
    url, schema = database
    app = flask_outbox_app.create_app(url, schema)
    with app.app_context():
        flask_outbox_app.db.create_all()
    asyncio.run(_migrate(url, schema))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        thread.join()
        with app.app_context():
            flask_outbox_app.db.engine.dispose()


async def _migrate(url: str, schema: str | None) -> None:
    async with open_outbox(url, schema=schema) as outbox:
        await outbox.migrate()


def run_worker(url: str, schema: str | None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "apitask", "worker", "--app"]
    command += ["flask_outbox_app:make_registry", "--url", url, "--until-empty"]
    if schema is not None:
        command += ["--schema", schema]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_signup_mail_commits_with_the_user_and_the_worker_sends_it(
    served: tuple[str, Any], database: tuple[str, str | None], inbox: Inbox
) -> None:
    base, app = served
    with httpx.Client(base_url=base, timeout=10) as client:
        accepted = {"email": "ann@example.org", "terms": "accepted"}
        signed_up = client.post("/signup", data=accepted, headers={"X-Request-Id": "req-ann"})
        assert signed_up.status_code == 201
        refused = client.post("/signup", data={"email": "bob@example.org"})
        assert refused.status_code == 422  # rolled back after the mail was enqueued
        invited = client.post(
            "/invite", data={"email": "cyd@example.org"}, headers={"X-Request-Id": "req-cyd"}
        )
        assert invited.status_code == 201
    assert inbox.mails == []  # nothing sent on the request path

    done = run_worker(*database)
    assert done.returncode == 0, done.stderr

    assert sorted(rcpt for rcpts, _ in inbox.mails for rcpt in rcpts) == [
        "ann@example.org",
        "cyd@example.org",
    ]
    assert all(b"Subject: Welcome" in content for _, content in inbox.mails)
    with app.app_context():
        users = flask_outbox_app.db.session.scalars(
            flask_outbox_app.db.select(flask_outbox_app.User.email)
        ).all()
    assert sorted(users) == ["ann@example.org", "cyd@example.org"]
    jobs = asyncio.run(_jobs(*database))
    # The request ids the web process stored: each mail's logs name its request.
    assert sorted((job.type, job.state.value, job.request_id) for job in jobs) == [
        ("mailer.welcome", "succeeded", "req-ann"),
        ("mailer.welcome", "succeeded", "req-cyd"),
    ]


async def _jobs(url: str, schema: str | None) -> list[Any]:
    async with open_outbox(url, schema=schema) as outbox:
        return await outbox.list()

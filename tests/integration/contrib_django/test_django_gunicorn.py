"""The Django project served by gunicorn (sync workers) on SQLite and PostgreSQL, its
mail sent by ``manage.py apitask_worker`` to a real SMTP server: every committed
sign-up gets its mail, no rolled-back one does; SIGTERM drains the worker."""

from __future__ import annotations

import email
import email.policy
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest

from .project import HERE, Gunicorn, manage, project_env

pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from smtp_sink import Sink


def worker(database: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return manage(
        database, "apitask_worker", "--poll-interval", "0.05", *args, DJSITE_SMTP_PORT=str(port)
    )


def test_signups_over_gunicorn_get_their_mail_and_rolled_back_ones_none(
    project_database: str, sink: Sink
) -> None:
    server = Gunicorn(project_database)
    try:
        committed: set[str] = set()
        rolled_back: set[str] = set()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(30):
                address = f"user{i}@example.test"
                undo = i % 3 == 0
                reply = client.post("/signup", data={"email": address, "rollback": "1" * undo})
                assert reply.status_code == (409 if undo else 200), reply.text
                (rolled_back if undo else committed).add(address)
    finally:
        server.stop()
    ran = worker(project_database, sink.port, "--until-empty", "--concurrency", "4")
    assert ran.returncode == 0, ran.stderr
    assert sink.wait_for(len(committed))
    delivered = [rcpt for e in sink.handler.envelopes for rcpt in e.rcpt_tos]
    assert sorted(delivered) == sorted(committed)
    ids = {
        email.message_from_bytes(m, policy=email.policy.default)["Message-ID"]
        for m in sink.messages
    }
    assert len(ids) == len(committed)
    stats = manage(project_database, "apitask_outbox", "stats")
    assert stats.returncode == 0, stats.stderr
    assert stats.stdout.splitlines()[1].split() == ["django.mail", "0", "0", "20", "0", "0", "20"]


def test_sigterm_lets_the_running_sends_finish(project_database: str, sink: Sink) -> None:
    """Four mails on a slow SMTP server, SIGTERM while they are being sent: the worker
    finishes them (none lost, none sent twice) and exits 0."""
    sink.handler.delay = 0.5
    queue = "; ".join(f"send_mail('s', 'b', None, ['d{i}@example.test'])" for i in range(4))
    queued = manage(
        project_database, "shell", "-c", f"from django.core.mail import send_mail; {queue}"
    )
    assert queued.returncode == 0, queued.stderr
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "apitask_worker",
            "--concurrency",
            "4",
            "--poll-interval",
            "0.05",
        ],
        cwd=HERE,
        env=project_env(project_database, DJSITE_SMTP_PORT=str(sink.port)),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.handler.data_started.wait(60)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # pragma: no cover - only when the test failed
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert sorted(r for e in sink.handler.envelopes for r in e.rcpt_tos) == [
        f"d{i}@example.test" for i in range(4)
    ]
    listing = manage(project_database, "apitask_outbox", "list", "--state", "succeeded")
    assert len(listing.stdout.splitlines()) == 5

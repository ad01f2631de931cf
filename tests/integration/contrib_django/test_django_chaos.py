"""Chaos: SIGKILL gunicorn (master and workers) and the mail worker during 2,000
sign-ups that send_mail in atomic, one in ten rolled back after the mail. After
restarts, every committed sign-up has its mail, no rolled-back or unfinished one
does, and a mail is sent twice at most for the sends in flight at a kill."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
from collections import Counter
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest

from .project import HERE, Gunicorn, manage, project_env

if TYPE_CHECKING:
    from smtp_sink import Sink

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SIGNUPS = 2000
CLIENTS = 4
WORKER_CONCURRENCY = 10


def start_worker(database: str, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "apitask_worker",
            "--concurrency",
            str(WORKER_CONCURRENCY),
            "--lease",
            "2",
            "--poll-interval",
            "0.1",
        ],
        cwd=HERE,
        env=project_env(database, DJSITE_SMTP_PORT=str(port)),
        stderr=subprocess.DEVNULL,
        text=True,
    )


# PostgreSQL only (many writers at once): conftest's database of the test's own.
@pytest.mark.parametrize("project_database", ["postgres"], indirect=True)
def test_killed_gunicorn_and_worker_lose_no_committed_mail(
    project_database: str, sink: Sink
) -> None:
    answered = threading.Semaphore(0)
    next_index = iter(range(SIGNUPS))
    lock = threading.Lock()
    server = [Gunicorn(project_database, workers=3)]
    worker = start_worker(project_database, sink.port)

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while True:
                with lock:
                    i = next(next_index, None)
                    url = server[0].url
                if i is None:
                    return
                data = {"email": f"c{i}@example.test", "rollback": "1" * (i % 10 == 0)}
                # Killed under this request: the database tells what committed.
                with contextlib.suppress(httpx.TransportError):
                    http.post(f"{url}/signup", data=data)
                answered.release()

    clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    for _kill in range(2):  # after a quarter of the sign-ups, and after half
        for _ in range(SIGNUPS // 4):
            answered.acquire()
        with lock:  # clients wait for the new server's address
            server[0].kill()
            server[0] = Gunicorn(project_database, workers=3)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = start_worker(project_database, sink.port)
    for thread in clients:
        thread.join(300)
    server[0].stop()
    worker.terminate()
    worker.wait(60)
    done = manage(
        project_database,
        "apitask_worker",
        "--until-empty",
        "--lease",
        "2",
        DJSITE_SMTP_PORT=str(sink.port),
    )
    assert done.returncode == 0, done.stderr

    with psycopg.connect(project_database) as conn:
        committed = {row[0] for row in conn.execute("SELECT email FROM signups_signup")}
    sent = Counter(r for e in sink.handler.envelopes for r in e.rcpt_tos)
    assert set(sent) == committed  # every committed sign-up mailed, nothing else
    assert not any(f"c{i}@example.test" in committed for i in range(0, SIGNUPS, 10))
    duplicates = sum(count - 1 for count in sent.values())
    # At most the sends in flight at the two kills of the worker.
    assert duplicates <= 2 * WORKER_CONCURRENCY, duplicates
    assert len(committed) > SIGNUPS * 0.8  # the kills interrupted a few requests, no more

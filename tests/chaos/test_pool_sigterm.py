"""Scenario 3: SIGTERM while 2,000 mails are queued in a WorkerPool (pool mode).

A real uvicorn process runs ``pool_mail_app``; a mail server that takes
50 ms per mail (a slow provider) keeps the queue full when SIGTERM comes.

* With a long shutdown duration, the drain delivers every mail before the
  process exits.
* With a one-second shutdown duration, the drain runs out of time and the
  pool spills its leftovers into the SQLite outbox; after a restart the
  outbox worker delivers them.

Lost: 0 in both. A mail that was being sent when the drain was cancelled may
have reached the server already and is sent again after the restart: those
are the only duplicates allowed, at most as many as the tasks cancelled.
"""

from __future__ import annotations

import signal
import socket
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from apitask.outbox import JobState, Outbox, TaskRegistry
from apitask.outbox.sqlite import SQLiteStore  # reads its SQL files at import, not on the loop

from ._support import HERE, Process, Tally, env_with, python, size

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

    from ._support import MailServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MAILS = size(2_000, 2_000)
BATCH = 500  # mails per request


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """The app's listening socket, bound here and handed to uvicorn (--fd): no port race,
    and it outlives a restart."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield sock


async def start_app(
    listener: socket.socket, smtp_port: int, outbox: str, shutdown: float
) -> Process:
    app = await python(
        "-m", "uvicorn", "--fd", str(listener.fileno()), "--app-dir", str(HERE.parent),
        "--log-level", "warning", "chaos.pool_mail_app:app",
        env=env_with(
            CHAOS_SMTP_PORT=str(smtp_port), CHAOS_SMTP_POOL="16",
            CHAOS_OUTBOX_URL=outbox, CHAOS_SHUTDOWN_TIMEOUT=str(shutdown),
        ),
        stdout=True,
        pass_fds=(listener.fileno(),),
    )  # fmt: skip
    try:
        assert await app.line() == "ready"
    except BaseException:
        await app.reap()
        raise
    return app


async def enqueue(listener: socket.socket) -> tuple[list[str], int]:
    """Submit MAILS mails in requests of BATCH; their Message-IDs, and how many are queued."""
    port = listener.getsockname()[1]
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for start in range(0, MAILS, BATCH):
            response = await http.post("/mails", params={"start": start, "n": BATCH})
            ids += response.json()["message_ids"]
        queued: int = (await http.get("/stats")).json()["queued"]
    return ids, queued


async def stop(app: Process) -> dict[str, str]:
    """SIGTERM, then the drain's report line; the process must exit cleanly.

    The report gets ``seconds``: from the signal to the exit.
    """
    start = time.monotonic()
    app.signal(signal.SIGTERM)
    line = await app.line(timeout=180)
    word, *fields = line.split()
    assert word == "drained", line
    # uvicorn re-raises the signal it handled once its shutdown is complete
    assert await app.wait(60) in (0, -signal.SIGTERM)
    return dict(field.split("=") for field in fields) | {
        "seconds": f"{time.monotonic() - start:.1f}"
    }


async def test_sigterm_drains_every_queued_mail_before_exit(
    listener: socket.socket,
    tmp_path: Path,
    mail_server: Callable[..., Awaitable[MailServer]],
    chaos_report: Callable[[Tally], None],
) -> None:
    """A long shutdown duration: every queued mail is delivered before the process exits."""
    server = await mail_server("--delay", "0.05")
    app = await start_app(listener, server.port, f"sqlite:///{tmp_path / 'outbox.db'}", 120)
    try:
        ids, queued = await enqueue(listener)
        report = await stop(app)
    finally:
        await app.reap()
    # Every line the server printed before the app exited is in the pipe: read them.
    await server.wait_for(server.has_all(ids), timeout=10)
    tally = Tally(
        "pool, SIGTERM, long drain",
        sent=set(ids),
        deliveries=server.accepted,
        notes={"queued at SIGTERM": queued, "SIGTERM to exit": f"{report.pop('seconds')}s"},
    )
    chaos_report(tally)
    assert queued > 0  # the SIGTERM came with mail still queued
    assert report == {"timed_out": "False", "spilled": "0", "abandoned": "0", "cancelled": "0"}
    assert (tally.lost, tally.duplicated, tally.unexpected) == (0, 0, set())


async def test_sigterm_spills_into_the_outbox_and_a_restart_delivers(
    listener: socket.socket,
    tmp_path: Path,
    mail_server: Callable[..., Awaitable[MailServer]],
    chaos_report: Callable[[Tally], None],
) -> None:
    """A one-second shutdown duration: the leftovers are spilled into the outbox, and the
    restarted app's outbox worker delivers them. Nothing lost."""
    server = await mail_server("--delay", "0.05")
    db = tmp_path / "outbox.db"
    url = f"sqlite:///{db}"
    app = await start_app(listener, server.port, url, 1.0)
    try:
        ids, queued = await enqueue(listener)
        first = await stop(app)
        before_restart = sum(1 for id in ids if server.accepted[id])
        app = await start_app(listener, server.port, url, 1.0)
        await server.wait_for(server.has_all(ids), timeout=180)
        second = await stop(app)
    finally:
        await app.reap()
    spilled, cancelled = int(first["spilled"]), int(first["cancelled"])
    tally = Tally(
        "pool, SIGTERM, 1s drain, spill to outbox, restart",
        sent=set(ids),
        deliveries=server.accepted,
        notes={
            "queued at SIGTERM": queued,
            "spilled": spilled,
            "cancelled mid-send": cancelled,
            "delivered before restart": before_restart,
            "SIGTERM to exit": f"{first['seconds']}s",
        },
    )
    chaos_report(tally)
    assert queued > 0
    assert first["timed_out"] == "True"
    assert spilled > 0
    assert first["abandoned"] == second["abandoned"] == "0"
    assert (tally.lost, tally.unexpected) == (0, set())
    assert tally.duplicated <= cancelled
    async with Outbox(SQLiteStore(str(db)), TaskRegistry()) as outbox:
        stats = await outbox.stats()
    assert stats.counts == {"mailer.confirmation": {JobState.SUCCEEDED: spilled}}

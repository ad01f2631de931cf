"""Scenario 2: a mail server that fails 20% of attempts, and one that refuses for good.

The outbox (SQLite) holds one confirmation mail per user and one for an
address the server refuses with 550; an ``apitask worker`` process sends them
through ``MailTask`` and ``SMTPClient``. The server answers 421 (and hangs
up), 451, or drops the connection after the data on 20% of its DATA
attempts (seeded), always before it accepts the mail.

* Every mail is delivered, none twice: a failed attempt never reached the
  mailbox, and the retry sends the same Message-ID.
* The refused mail is tried once and dead-lettered, and ``apitask outbox
  list --state dead`` shows the 550 reply.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

from apitask.mail import MailTask, RecordingClient
from apitask.outbox import JobState, Outbox, TaskRegistry
from apitask.outbox.sqlite import SQLiteStore  # reads its SQL files at import, not on the loop

from ._support import SEED, Tally, env_with, poll, python, size
from .chaos_tasks import confirmation

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from ._support import MailServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MAILS = size(500, 5_000)
REFUSED = "refused-1@example.org"
# 20% failures per attempt: 10 attempts leave a mail undelivered with odds 0.2**10 = 1e-7.
MAX_ATTEMPTS = "10"


def confirmation_task(to: str) -> MailTask:
    return MailTask(confirmation(to), RecordingClient())  # stored, not sent here: any client


async def test_flaky_server_every_mail_delivered_and_550_dead_lettered_once(
    tmp_path: Path,
    mail_server: Callable[..., Awaitable[MailServer]],
    chaos_report: Callable[[Tally], None],
) -> None:
    """421/451/drops on 20% of attempts: all delivered, no duplicate; a 550: dead once,
    the reason in `apitask outbox list --state dead`."""
    server = await mail_server("--flaky", "0.2", "--seed", str(SEED), "--refuse", "refused-")
    db = tmp_path / "outbox.db"
    url = f"sqlite:///{db}"
    tasks = [confirmation_task(f"user-{i}@example.org") for i in range(MAILS)]
    refused = confirmation_task(REFUSED)
    async with Outbox(SQLiteStore(str(db)), TaskRegistry()) as outbox:
        await outbox.migrate()
        for task in [*tasks, refused]:
            await outbox.enqueue(None, task)
    env = env_with(CHAOS_SMTP_PORT=str(server.port), CHAOS_SMTP_POOL="8")
    worker = await python(
        "-m", "apitask", "worker", "--app", "chaos_tasks:mails", "--url", url,
        "-c", "16", "--max-attempts", MAX_ATTEMPTS, "--poll-interval", "100ms",
        env=env,
    )  # fmt: skip
    ids = [task.message.message_id for task in tasks]
    try:
        all_accepted = server.has_all(ids)
        delivered = await server.wait_for(
            lambda: all_accepted() and REFUSED in server.refused, timeout=240
        )
        async with Outbox(SQLiteStore(str(db)), TaskRegistry()) as outbox:

            async def finished() -> int:
                stats = await outbox.stats()
                return stats.total(JobState.SUCCEEDED) + stats.total(JobState.DEAD)

            # the worker writes outcomes back in batches: wait for the last ones
            await poll(finished, lambda n: n == MAILS + 1, what="every job finished", timeout=60)
            stats = await outbox.stats()
        worker.signal(signal.SIGTERM)
        assert await worker.wait(60) == 0
    finally:
        await worker.reap()
    listing = await python("-m", "apitask", "outbox", "list", "--state", "dead", "--url", url,
                           env=env, stdout=True)  # fmt: skip
    dead_lines = await listing.rest()
    assert await listing.wait(30) == 0
    tally = Tally(
        "outbox, SMTP server failing 20% of attempts (+1 mail refused 550)",
        sent=set(ids),
        deliveries=server.accepted,
        notes={f"failed {kind}": n for kind, n in sorted(server.failed.items())}
        | {"dead-lettered": stats.total(JobState.DEAD)},
    )
    chaos_report(tally)
    assert delivered
    assert (tally.lost, tally.duplicated, tally.unexpected) == (0, 0, set())
    assert sum(server.failed.values()) > MAILS // 10  # the chaos happened
    assert set(server.failed) == {"421", "451", "drop"}
    assert stats.counts == {"mailer.confirmation": {JobState.SUCCEEDED: MAILS, JobState.DEAD: 1}}
    header, row = dead_lines  # one dead job
    assert header.split()[:4] == ["ID", "TYPE", "STATE", "ATTEMPTS"]
    assert row.split()[1:4] == ["mailer.confirmation", "dead", "1"]
    assert "550" in row, row
    assert server.refused == [REFUSED]  # tried once: a 5xx is not retried

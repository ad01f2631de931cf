"""What the pool writes to the logs about mail it could not send before shutdown.

Found while running scenario 3: every spilled leftover is logged at WARNING
with its payload, and a ``MailTask``'s payload is the whole message: the
recipient's address and the body with its one-time code and confirmation
link. docs/mail.md promises that mail logs carry neither (only the type, the
recipient's domain and the Message-ID); a spill of 2,000 mails writes 2,000
of them, with tokens that sign a user in, to the logs. Fixed: the pool's
leftover log names tasks by type and state; payloads stay in the DrainReport.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import apitask
from apitask import Task
from apitask.mail import MailTask

from .chaos_tasks import confirmation

if TYPE_CHECKING:
    import pytest


class Stalled:
    """A mail client that never answers: its send is still running at the deadline."""

    async def send(self, message: object) -> None:
        await asyncio.Event().wait()


class Collect:
    """A spill sink that keeps what it is handed."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    async def submit(self, task: Task) -> None:
        self.tasks.append(task)

    def submit_sync(self, task: Task) -> None:
        self.tasks.append(task)


async def test_a_spilled_mail_leaves_no_address_or_body_in_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shutdown with one mail being sent and one queued: both are spilled, and the log
    names them by type (and Message-ID), never by address or content."""
    sink = Collect()
    mails = [confirmation(f"user-{i}@example.org") for i in range(2)]
    pool = apitask.WorkerPool(workers=1, shutdown_timeout=0, cancel_timeout=1, spill=sink)
    with caplog.at_level(logging.WARNING, logger="apitask"):
        async with pool:
            for message in mails:
                await pool.submit(MailTask(message, Stalled()))
    assert len(sink.tasks) == 2  # both spilled, so the scenario is the one described
    for message in mails:
        assert message.to not in caplog.text
        assert message.text not in caplog.text

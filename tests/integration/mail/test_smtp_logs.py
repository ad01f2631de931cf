"""A refused mail's logs and stored error name its type and domain, never its address.

Mail servers echo the recipient in their replies. The reply reaches the
error's text, which the mail task, the worker pool and the outbox worker log
(with tracebacks) and the outbox stores as the dead job's ``last_error``.
Each test sends through a real SMTP server (aiosmtpd) that refuses the
recipient, and reads what was really logged (caplog, tracebacks included)
and stored.
"""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING

import pytest

from apitask import Backoff, WorkerPool
from apitask.mail import MailTask, Message, PermanentMailError
from apitask.outbox import JobState, TaskRegistry, open_outbox

from .smtp_server import client_for

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from .smtp_server import MailServer

    StartServer = Callable[..., Awaitable[MailServer]]

VICTIM = "Victim.Name@mail.example.net"

REPLIES = [
    # Postfix
    (
        "550 5.1.1 <Victim.Name@mail.example.net>: Recipient address rejected: User unknown",
        "550 5.1.1 <***@mail.example.net>: Recipient address rejected: User unknown",
    ),
    # sendmail: the local part alone
    ("550 5.1.1 victim.name... User unknown", "550 5.1.1 ***... User unknown"),
    # Exchange-style, address without brackets, another case
    (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; VICTIM.NAME@mail.example.net not found",
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; ***@mail.example.net not found",
    ),
]


def refused_mail() -> Message:
    return Message(to=VICTIM, subject="Reset", text="code: 918273", type="recovery")


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """apitask's records as written: message, extra fields and traceback (the test
    server's own log, aiosmtpd's ``mail.log``, shows every command it receives)."""
    records = [record for record in caplog.records if record.name.startswith("apitask")]
    assert records
    return "\n".join(
        f"{record.getMessage()} {record.__dict__}"
        + ("".join(traceback.format_exception(record.exc_info[1])) if record.exc_info else "")
        for record in records
    )


def assert_no_address(text: str) -> None:
    assert "victim" not in text.lower()
    assert "918273" not in text


@pytest.mark.parametrize(("reply", "kept"), REPLIES)
async def test_the_error_keeps_code_status_and_wording_not_the_address(
    mail_server: StartServer, reply: str, kept: str
) -> None:
    server = await mail_server()
    server.script("RCPT", reply)
    async with client_for(server) as client:
        with pytest.raises(PermanentMailError) as caught:
            await client.send(refused_mail())
    assert str(caught.value) == f"SMTP server refused RCPT TO: {kept}"
    assert caught.value.code == 550
    # aiosmtplib's exception (the raw reply) is not chained: a traceback cannot print it.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert_no_address("".join(traceback.format_exception(caught.value)))


async def test_a_pool_logs_the_failure_by_type_and_domain(
    mail_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await mail_server()
    server.script("RCPT", REPLIES[0][0])
    caplog.set_level(logging.INFO)
    async with client_for(server) as client, WorkerPool(workers=1) as pool:
        await pool.submit(MailTask(refused_mail(), client))
    text = logged(caplog)
    assert_no_address(text)
    assert "recovery mail to a recipient at mail.example.net not sent (final)" in text
    assert "550 5.1.1 <***@mail.example.net>: Recipient address rejected" in text
    assert 'error running "mailer.recovery"' in text  # the pool's own line, with traceback


@pytest.mark.parametrize(
    "reply",
    [
        REPLIES[0][0],  # 5xx: dead at once
        "450 4.2.1 <Victim.Name@mail.example.net>: greylisted",  # 4xx: dead once retries run out
    ],
)
async def test_a_dead_outbox_mail_is_logged_and_stored_without_the_address(
    mail_server: StartServer, caplog: pytest.LogCaptureFixture, tmp_path: Path, reply: str
) -> None:
    server = await mail_server()
    server.script("RCPT", reply)
    caplog.set_level(logging.INFO)
    async with client_for(server) as client:
        registry = TaskRegistry()
        registry.register_prefix("mailer.", MailTask.factory(client))
        outbox = open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}", registry)
        try:
            await outbox.migrate()
            await outbox.enqueue(None, MailTask(refused_mail(), client))
            worker = outbox.worker(poll_interval=0.01, backoff=Backoff(max_attempts=1))
            await worker.run(until_empty=True)
            (job,) = await outbox.list(JobState.DEAD)
        finally:
            await outbox.aclose()
    text = logged(caplog)
    assert_no_address(text)
    assert_no_address(str(job.last_error))
    assert "@mail.example.net" in str(job.last_error)
    assert reply.split(" <")[0] in str(job.last_error)  # code and enhanced status
    assert 'job 1 "mailer.recovery" is dead' in text
    assert "recovery mail to a recipient at mail.example.net not sent" in text

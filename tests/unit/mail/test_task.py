"""MailTask: a durable task that sends one message, logs and counts its failures."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

# open_outbox imports its backend lazily, and that import reads the SQL files:
# import it here, not on the event loop.
import apitask.outbox.sqlite  # noqa: F401
from apitask import DurableTask, Outcome, TaskCounters, TransientError
from apitask.mail import (
    InvalidMessageError,
    MailTask,
    Message,
    PermanentMailError,
    RecordingClient,
    TransientMailError,
    mail_counters,
)
from apitask.outbox import JobDecodeError, JobState, TaskRegistry, open_outbox
from apitask.outbox._registry import encode_payload

if TYPE_CHECKING:
    from pathlib import Path


def recovery(to: str = "ann@example.org") -> Message:
    return Message(to=to, subject="Reset", text="token 123456", type="recovery")


class Failing:
    """A client whose every send raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def send(self, message: Message) -> None:
        raise self.error


def test_type_payload_and_repr_hide_the_address() -> None:
    message = recovery()
    task = MailTask(message, RecordingClient())
    assert isinstance(task, DurableTask)
    assert task.type == "mailer.recovery"
    assert task.payload() == {"message": message.to_dict()}
    assert repr(task) == "<MailTask mailer.recovery to a recipient at example.org>"


async def test_run_sends_and_counts_by_mail_type() -> None:
    client, counters, message = RecordingClient(), TaskCounters(), recovery()
    await MailTask(message, client, counters=counters).run()
    assert client.messages == [message]
    assert counters.snapshot() == {"recovery": {"succeeded": 1}}


async def test_the_default_counters_are_mail_counters() -> None:
    before = mail_counters.get("recovery", Outcome.SUCCEEDED)
    await MailTask(recovery(), RecordingClient()).run()
    assert mail_counters.get("recovery", Outcome.SUCCEEDED) == before + 1


@pytest.mark.parametrize(
    ("error", "note"),
    [
        (TransientMailError("421 try later", code=421), "transient, may be retried"),
        (PermanentMailError("550 no such user", code=550), "final"),
    ],
)
async def test_a_failure_is_logged_with_domain_counted_and_reraised(
    caplog: pytest.LogCaptureFixture, error: Exception, note: str
) -> None:
    counters = TaskCounters()
    task = MailTask(recovery("bob@mail.example.net"), Failing(error), counters=counters)
    with caplog.at_level(logging.ERROR, "apitask.mail"), pytest.raises(type(error)) as raised:
        await task.run()
    assert raised.value is error  # unchanged: the runner classifies it
    assert counters.snapshot() == {"recovery": {"failed": 1}}
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"mail: recovery mail to a recipient at mail.example.net not sent ({note}): {error}"
    )
    assert "bob@" not in record.getMessage()
    assert (
        record.__dict__["mail_type"],
        record.__dict__["recipient_domain"],
        record.__dict__["task_type"],
    ) == (
        "recovery",
        "mail.example.net",
        "mailer.recovery",
    )
    assert record.__dict__["message_id"] == task.message.message_id
    assert isinstance(error, TransientError) == ("transient" in note)


def test_the_factory_rebuilds_an_identical_task_through_a_registry() -> None:
    client = RecordingClient()
    counters = TaskCounters()
    registry = TaskRegistry()
    registry.register_prefix("mailer.", MailTask.factory(client, counters=counters))
    original = MailTask(recovery("zoë@exämple.com"), RecordingClient())
    rebuilt = registry.build(original.type, encode_payload(original))
    assert isinstance(rebuilt, MailTask)
    assert rebuilt.message == original.message  # same Message-ID and Date: same bytes
    assert rebuilt.client is client
    assert rebuilt.counters is counters


@pytest.mark.parametrize(
    ("type", "payload", "reason"),
    [
        ("mailer.recovery", {}, "has no 'message' object"),
        ("mailer.recovery", {"message": "text"}, "has no 'message' object"),
        ("mailer.recovery", {"message": {"to": "a@b.c"}}, "stored message has no 'subject'"),
        ("mailer.invite", {"message": recovery().to_dict()}, "holds a message of type 'recovery'"),
        (
            "mailer.recovery",
            {"message": {**recovery().to_dict(), "to": "a@b.c\r\nBcc: x@evil.test"}},
            "control character",
        ),
    ],
)
def test_a_bad_payload_is_a_job_decode_error(
    type: str, payload: dict[str, object], reason: str
) -> None:
    factory = MailTask.factory(RecordingClient())
    with pytest.raises(InvalidMessageError, match=reason):
        factory(type, payload)  # type: ignore[arg-type]
    registry = TaskRegistry()
    registry.register_prefix("mailer.", factory)
    with pytest.raises(JobDecodeError, match="InvalidMessageError"):
        registry.build(type, json.dumps(payload))


async def test_an_outbox_worker_sends_the_stored_mail_and_dead_letters_a_bad_one(
    tmp_path: Path,
) -> None:
    """Enqueued in SQLite, rebuilt by the factory, sent by a worker; a bad payload goes dead."""
    client = RecordingClient()
    registry = TaskRegistry()
    registry.register_prefix("mailer.", MailTask.factory(client))
    message = recovery()
    async with open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}", registry) as outbox:
        await outbox.migrate()
        await outbox.enqueue(None, MailTask(message, RecordingClient()))

        class Forged:
            type = "mailer.invite"

            def payload(self) -> dict[str, object]:
                return {"message": message.to_dict()}

            async def run(self) -> None:  # pragma: no cover - never run, only stored
                raise AssertionError

        await outbox.enqueue(None, Forged())
        await outbox.worker().run(until_empty=True)
        assert client.messages == [message]
        [dead] = await outbox.list(JobState.DEAD)
        assert dead.type == "mailer.invite"
        assert dead.last_error is not None
        assert "holds a message of type 'recovery'" in dead.last_error

"""DeliveryTask: the durable delivery shape, its defaults, and the channels built on it."""

from __future__ import annotations

import json
import logging
import re
import sys
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# open_outbox imports its backend lazily, and that import reads the SQL files:
# import it here, not on the event loop.
import apitask.outbox.sqlite  # noqa: F401
from apitask import DeliveryTask, DurableTask, Outcome, TaskCounters, TransientError
from apitask.mail import InvalidMessageError, MailTask, RecordingClient
from apitask.outbox import JobDecodeError, JobState, TaskRegistry, open_outbox
from apitask.outbox._registry import encode_payload
from apitask.webhooks import Webhook, WebhookTask

if TYPE_CHECKING:
    from collections.abc import Mapping

    from apitask import JSONValue

DOCS = Path(__file__).parents[2] / "docs" / "outbox.md"


@dataclass(frozen=True)
class Note:
    topic: str
    body: str

    def to_dict(self) -> dict[str, JSONValue]:
        return dict(asdict(self))


class Notes:
    """A sender that keeps what it is given, or raises ``error`` once."""

    def __init__(self, error: Exception | None = None, answer: object = None) -> None:
        self.sent: list[Note] = []
        self.error = error
        self.answer = answer

    async def send(self, note: Note, /) -> object:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        self.sent.append(note)
        return self.answer


note_counters = TaskCounters()


class NoteTask(DeliveryTask[Note, Notes]):
    """A channel that sets only what it must: every default of the base shows."""

    type_prefix = "note."
    payload_key = "note"
    default_counters = note_counters

    @property
    def label(self) -> str:
        return self.item.topic

    @classmethod
    def decode(cls, data: Mapping[str, JSONValue]) -> Note:
        topic, body = data.get("topic"), data.get("body")
        if not isinstance(topic, str) or not isinstance(body, str):
            raise ValueError("stored note is not a topic and a body")
        return Note(topic, body)


class Recorded(NoteTask):
    """A channel that overrides the hooks: noun, verb, describe, fields, delivered."""

    noun = "memo"
    verb = "filed"
    channel = "memo"
    seen: list[object]

    __slots__ = ()

    def describe(self) -> str:
        return f"{self.label} memo"

    def log_fields(self) -> dict[str, str]:
        return {"topic": self.label}

    def delivered(self, result: object) -> None:
        Recorded.seen.append(result)


def test_the_base_gives_type_payload_repr_and_the_default_counters() -> None:
    note = Note("ops", "deploy done")
    task = NoteTask(note, Notes())
    assert isinstance(task, DurableTask)
    assert (task.type, task.item, task.counters) == ("note.ops", note, note_counters)
    assert task.payload() == {"note": {"topic": "ops", "body": "deploy done"}}
    assert repr(task) == "<NoteTask note.ops>"
    assert NoteTask(note, Notes(), counters=(mine := TaskCounters())).counters is mine


def test_a_channel_must_say_its_label_and_decode() -> None:
    class Bare(DeliveryTask[Note, Notes]):
        type_prefix = "bare."
        payload_key = "bare"
        default_counters = TaskCounters()

    with pytest.raises(TypeError, match="abstract"):
        Bare(Note("a", "b"), Notes())  # type: ignore[abstract]


async def test_run_sends_counts_and_calls_delivered() -> None:
    sender, counters = Notes(answer="id-7"), TaskCounters()
    Recorded.seen = []
    await NoteTask(Note("ops", "x"), sender, counters=counters).run()
    await Recorded(Note("ops", "y"), sender, counters=counters).run()
    assert [note.body for note in sender.sent] == ["x", "y"]
    assert counters.snapshot() == {"ops": {"succeeded": 2}}
    assert Recorded.seen == ["id-7"]  # only the channel that asked is told


@pytest.mark.parametrize(
    ("error", "note"),
    [(TransientError("busy", retry_after=3.0), "transient, may be retried"), (OSError(), "final")],
)
async def test_a_failure_is_logged_by_the_defaults_counted_and_reraised(
    caplog: pytest.LogCaptureFixture, error: Exception, note: str
) -> None:
    counters = TaskCounters()
    task = NoteTask(Note("ops", "secret body"), Notes(error), counters=counters)
    with caplog.at_level(logging.ERROR, "apitask.delivery"), pytest.raises(type(error)) as raised:
        await task.run()
    assert raised.value is error
    assert counters.snapshot() == {"ops": {"failed": 1}}
    [record] = caplog.records
    assert record.name == "apitask.delivery"
    assert record.getMessage() == f"delivery: ops not sent ({note}): {error}"
    assert (record.__dict__["action"], record.__dict__["task_type"]) == ("delivery", "note.ops")
    assert "secret body" not in record.getMessage()


async def test_a_failure_is_logged_with_the_channels_overrides(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = Recorded(Note("ops", "x"), Notes(OSError("disk")), counters=TaskCounters())
    with caplog.at_level(logging.ERROR, "apitask.delivery"), pytest.raises(OSError):
        await task.run()
    [record] = caplog.records
    assert record.getMessage() == "memo: ops memo not filed (final): disk"
    assert (record.__dict__["action"], record.__dict__["topic"]) == ("memo", "ops")


def test_the_factory_rebuilds_with_the_default_or_given_counters() -> None:
    sender, mine = Notes(), TaskCounters()
    original = NoteTask(Note("ops", "x"), Notes())
    registry = TaskRegistry()
    registry.register_prefix("note.", NoteTask.factory(sender))
    registry.register("note.ops", NoteTask.factory(sender, counters=mine))
    rebuilt = registry.build("note.ops", encode_payload(original))
    other = registry.build("note.dev", encode_payload(NoteTask(Note("dev", "y"), Notes())))
    assert isinstance(rebuilt, NoteTask) and isinstance(other, NoteTask)
    assert (rebuilt.item, rebuilt.sender, rebuilt.counters) == (original.item, sender, mine)
    assert other.counters is note_counters


@pytest.mark.parametrize(
    ("cls", "type", "payload", "reason"),
    [
        (NoteTask, "note.ops", {}, "stored delivery task 'note.ops' has no 'note' object"),
        (Recorded, "note.ops", {"note": []}, "stored memo task 'note.ops' has no 'note' object"),
        (NoteTask, "note.ops", {"note": {"topic": 1}}, "stored note is not a topic and a body"),
        (
            NoteTask,
            "note.dev",
            {"note": {"topic": "ops", "body": "x"}},
            "stored delivery task 'note.dev' holds a 'note.ops' delivery",
        ),
        (
            Recorded,
            "note.dev",
            {"note": {"topic": "ops", "body": "x"}},
            "stored memo task 'note.dev' holds a 'note.ops' memo",
        ),
    ],
)
def test_a_bad_payload_is_the_channels_error_and_a_job_decode_error(
    cls: type[NoteTask], type: str, payload: dict[str, Any], reason: str
) -> None:
    factory = cls.factory(Notes())
    with pytest.raises(ValueError, match=re.escape(reason)):
        factory(type, payload)
    registry = TaskRegistry()
    registry.register_prefix("note.", factory)
    with pytest.raises(JobDecodeError, match=re.escape(reason)):
        registry.build(type, json.dumps(payload))


# What an outbox written by apitask 0.1 holds: the payloads the channels stored
# before they shared a base. A job already queued must still run.
OLD_MAIL = (
    '{"message":{"to":"ann@example.org","subject":"Reset","html":"","text":"token 123456",'
    '"headers":{},"type":"recovery","message_id":"<18ee3ffc4dd0bb9f.e9f22d435aecdcbd@localhost>",'
    '"date":"Sat, 05 Dec 2026 04:07:34 GMT"}}'
)
OLD_WEBHOOK = (
    '{"webhook":{"name":"send-sms","url":"https://hooks.example.com/sms",'
    '"id":"e9e2fdc6-0553-4d26-922b-327031d80c2f","body":{"sms":{"otp":"123456"}}}}'
)


def test_an_old_mail_payload_still_decodes_and_encodes_the_same() -> None:
    registry = TaskRegistry()
    registry.register_prefix("mailer.", MailTask.factory(RecordingClient()))
    task = registry.build("mailer.recovery", OLD_MAIL)
    assert isinstance(task, MailTask)
    assert task.message.message_id == "<18ee3ffc4dd0bb9f.e9f22d435aecdcbd@localhost>"
    assert (task.message.to, task.message.text) == ("ann@example.org", "token 123456")
    assert encode_payload(task) == OLD_MAIL
    with pytest.raises(JobDecodeError, match="holds a message of type 'recovery'"):
        registry.build("mailer.invite", OLD_MAIL)
    with pytest.raises(InvalidMessageError):
        MailTask.factory(RecordingClient())("mailer.recovery", {"message": {}})


def test_an_old_webhook_payload_still_decodes_and_encodes_the_same() -> None:
    registry = TaskRegistry()
    registry.register("webhook.send-sms", WebhookTask.factory(Notes()))  # type: ignore[arg-type]
    task = registry.build("webhook.send-sms", OLD_WEBHOOK)
    assert isinstance(task, WebhookTask)
    assert task.webhook == Webhook(
        name="send-sms",
        url="https://hooks.example.com/sms",
        id="e9e2fdc6-0553-4d26-922b-327031d80c2f",
        body={"sms": {"otp": "123456"}},
    )
    assert encode_payload(task) == OLD_WEBHOOK


def docs_example() -> str:
    """The code block docs/outbox.md marks as tested."""
    text = DOCS.read_text(encoding="utf-8")
    marker = "<!-- tested: tests/unit/test_delivery.py runs this block -->\n```python\n"
    start = text.index(marker) + len(marker)
    return text[start : text.index("```", start)]


# Read at import, not on the event loop (blockbuster).
DOCS_EXAMPLE = docs_example()


class ChatClient:
    """The docs' ``ChatClient``: keeps what it posts."""

    def __init__(self) -> None:
        self.posts: list[object] = []

    async def send(self, post: object, /) -> None:
        self.posts.append(post)


async def test_the_docs_channel_runs_through_a_real_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example of docs/outbox.md: stored in SQLite, rebuilt, sent, payload erased."""
    module = types.ModuleType("docs_outbox_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look it up
    exec(compile(DOCS_EXAMPLE, str(DOCS), "exec"), vars(module))
    ChatPost, ChatTask = module.ChatPost, module.ChatTask
    client = ChatClient()
    registry = TaskRegistry()
    registry.register_prefix("chat.", ChatTask.factory(client))
    post = ChatPost("ops", "deploy done")
    task = ChatTask(post, ChatClient())
    assert (task.type, task.payload()) == (
        "chat.ops",
        {"post": {"room": "ops", "text": "deploy done"}},
    )
    async with open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}", registry) as outbox:
        await outbox.migrate()
        await outbox.enqueue(None, task)
        await outbox.worker().run(until_empty=True)
        [job] = await outbox.list(JobState.SUCCEEDED)
    assert client.posts == [post]
    assert (job.type, job.payload) == ("chat.ops", "{}")
    assert ChatTask.default_counters.get("ops", Outcome.SUCCEEDED) == 1

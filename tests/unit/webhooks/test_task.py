"""WebhookTask: a durable task that delivers one webhook, logs and counts its failures."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

# open_outbox imports its backend lazily, and that import reads the SQL files:
# import it here, not on the event loop.
import apitask.outbox.sqlite  # noqa: F401
from apitask import DurableTask, Outcome, TaskCounters, TransientError
from apitask.outbox import JobDecodeError, JobState, TaskRegistry, open_outbox
from apitask.outbox._registry import encode_payload
from apitask.webhooks import (
    InvalidWebhookError,
    PermanentWebhookError,
    TransientWebhookError,
    Webhook,
    WebhookTask,
    webhook_counters,
)

if TYPE_CHECKING:
    from pathlib import Path


def hook(name: str = "send-sms") -> Webhook:
    return Webhook.create(name, "https://hooks.example.com/sms?key=k", {"sms": {"otp": "123456"}})


class Recording:
    """A client that records what it was given."""

    def __init__(self) -> None:
        self.sent: list[Webhook] = []

    async def send(self, webhook: Webhook) -> None:
        self.sent.append(webhook)


class Failing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def send(self, webhook: Webhook) -> None:
        raise self.error


def test_type_payload_and_repr_hold_no_secret_and_no_body() -> None:
    webhook = hook()
    task = WebhookTask(webhook, Recording())
    assert isinstance(task, DurableTask)
    assert task.type == "webhook.send-sms"
    assert task.payload() == {"webhook": webhook.to_dict()}
    assert repr(task) == f"<WebhookTask webhook.send-sms {webhook.id} to hooks.example.com>"


async def test_run_delivers_and_counts_by_name() -> None:
    client, counters, webhook = Recording(), TaskCounters(), hook()
    await WebhookTask(webhook, client, counters=counters).run()
    assert client.sent == [webhook]
    assert counters.snapshot() == {"send-sms": {"succeeded": 1}}


async def test_the_default_counters_are_webhook_counters() -> None:
    before = webhook_counters.get("send-sms", Outcome.SUCCEEDED)
    await WebhookTask(hook(), Recording()).run()
    assert webhook_counters.get("send-sms", Outcome.SUCCEEDED) == before + 1


@pytest.mark.parametrize(
    ("error", "note"),
    [
        (TransientWebhookError("HTTP 503", status=503), "transient, may be retried"),
        (PermanentWebhookError("HTTP 400: bad phone", status=400), "final"),
    ],
)
async def test_a_failure_is_logged_with_host_and_id_counted_and_reraised(
    caplog: pytest.LogCaptureFixture, error: Exception, note: str
) -> None:
    counters, webhook = TaskCounters(), hook()
    task = WebhookTask(webhook, Failing(error), counters=counters)
    with caplog.at_level(logging.ERROR, "apitask.webhooks"), pytest.raises(type(error)) as raised:
        await task.run()
    assert raised.value is error
    assert counters.snapshot() == {"send-sms": {"failed": 1}}
    [record] = caplog.records
    assert record.getMessage() == (
        f"webhook: send-sms {webhook.id} to hooks.example.com not delivered ({note}): {error}"
    )
    assert "123456" not in record.getMessage() and "key=k" not in record.getMessage()
    assert record.__dict__["webhook_id"] == webhook.id
    assert record.__dict__["task_type"] == "webhook.send-sms"
    assert isinstance(error, TransientError) == ("transient" in note)


def test_the_factory_rebuilds_the_same_webhook_with_its_own_client() -> None:
    client, counters = Recording(), TaskCounters()
    registry = TaskRegistry()
    registry.register("webhook.send-sms", WebhookTask.factory(client, counters=counters))
    original = WebhookTask(hook(), Recording())
    rebuilt = registry.build(original.type, encode_payload(original))
    assert isinstance(rebuilt, WebhookTask)
    assert rebuilt.webhook == original.webhook  # same id: the receiver can de-duplicate
    assert rebuilt.client is client
    assert rebuilt.counters is counters


@pytest.mark.parametrize(
    ("type", "payload", "reason"),
    [
        ("webhook.send-sms", {}, "has no 'webhook' object"),
        ("webhook.send-sms", {"webhook": "text"}, "has no 'webhook' object"),
        ("webhook.send-sms", {"webhook": {"name": "send-sms"}}, "field 'url'"),
        ("webhook.send-email", {"webhook": hook().to_dict()}, "holds a webhook named 'send-sms'"),
    ],
)
def test_a_bad_payload_is_a_job_decode_error(
    type: str, payload: dict[str, object], reason: str
) -> None:
    factory = WebhookTask.factory(Recording())
    with pytest.raises(InvalidWebhookError, match=reason):
        factory(type, payload)  # type: ignore[arg-type]
    registry = TaskRegistry()
    registry.register_prefix("webhook.", factory)
    with pytest.raises(JobDecodeError, match="InvalidWebhookError"):
        registry.build(type, json.dumps(payload))


async def test_an_outbox_worker_delivers_the_stored_webhook(tmp_path: Path) -> None:
    """Stored in SQLite without a secret, rebuilt by the factory, delivered by a worker;
    once delivered, the stored body (its one-time code) is erased."""
    client = Recording()
    registry = TaskRegistry()
    registry.register("webhook.send-sms", WebhookTask.factory(client))
    webhook = hook()
    async with open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}", registry) as outbox:
        await outbox.migrate()
        await outbox.enqueue(None, WebhookTask(webhook, Recording()))
        await outbox.worker().run(until_empty=True)
        assert client.sent == [webhook]
        assert await outbox.list(JobState.DEAD) == []
        [job] = await outbox.list(JobState.SUCCEEDED)
        assert (job.type, job.payload) == ("webhook.send-sms", "{}")

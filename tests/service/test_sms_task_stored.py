"""SmsTask on the library's DeliveryTask: a text stored before the move still runs,
and its logs keep their words (purpose, masked number, never the text)."""

from __future__ import annotations

import logging

import pytest

from apitask import DeliveryTask, TaskCounters
from apitask.outbox import TaskRegistry
from apitask.outbox._registry import encode_payload
from apitask_auth.delivery.devinbox import DevInbox
from apitask_auth.delivery.sms import PermanentSmsError, SmsTask, TextMessage
from apitask_auth.delivery.sms.devinbox import DevInboxProvider

# What an outbox held for a text before SmsTask shared the library's base.
OLD_TEXT = '{"sms":{"to":"15551234567","text":"code 123456","channel":"sms","purpose":"otp"}}'


class Refusing:
    async def send(self, message: TextMessage) -> str:
        raise PermanentSmsError("21211: invalid 'To' number")

    async def aclose(self) -> None:  # pragma: no cover - never called here
        pass


def test_an_old_stored_text_still_decodes_and_encodes_the_same() -> None:
    provider = DevInboxProvider(DevInbox())
    registry = TaskRegistry()
    registry.register_prefix("sms.", SmsTask.factory(provider))
    task = registry.build("sms.otp", OLD_TEXT)
    assert isinstance(task, DeliveryTask)
    assert isinstance(task, SmsTask)
    assert (task.message.to, task.message.text, task.provider) == (
        "15551234567",
        "code 123456",
        provider,
    )
    assert encode_payload(task) == OLD_TEXT


async def test_sent_and_failed_texts_log_as_before(caplog: pytest.LogCaptureFixture) -> None:
    counters = TaskCounters()
    text = TextMessage(to="15551234567", text="code 123456", purpose="otp")
    with caplog.at_level(logging.INFO, "apitask_auth.sms"):
        await SmsTask(text, DevInboxProvider(DevInbox()), counters=counters).run()
        with pytest.raises(PermanentSmsError):
            await SmsTask(text, Refusing(), counters=counters).run()
    sent, failed = caplog.records
    assert sent.getMessage() == "sms: otp text sent to +15…67"
    assert (sent.__dict__["task_type"], sent.levelno) == ("sms.otp", logging.INFO)
    assert sent.__dict__["provider_id"]
    assert failed.getMessage() == (
        "sms: otp text to +15…67 not sent (final): 21211: invalid 'To' number"
    )
    assert (failed.__dict__["action"], failed.__dict__["channel"]) == ("sms", "sms")
    assert "123456" not in sent.getMessage() + failed.getMessage()
    assert counters.snapshot() == {"otp": {"succeeded": 1, "failed": 1}}

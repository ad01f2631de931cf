"""A hook that reports a failure in a 2xx answer and echoes what it was sent (the
address, the one-time code) leaves neither in the logs, the outbox's ``last_error``
or the request's answer: the error object's message is redacted like a non-2xx
answer's text."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from apitask.outbox import JobState
from apitask.webhooks import WebhookResponse
from apitask_auth.delivery.send_hooks import PermanentHookAnswer, check_answer
from integration.webhooks.receiver import Answer, Received, Receiver

from .conftest import email
from .test_send_hooks import hooked, signup

if TYPE_CHECKING:
    from collections.abc import Callable

    from apitask import JSONValue


def echoing(n: int, request: Received) -> Answer:
    """GoTrue's error object in a 200, its message quoting the call's address and code."""
    call = request.json()
    said = f"cannot mail {call['email_data']['token']} to {call['user']['email']}"
    return Answer(200, json.dumps({"error": {"http_code": 422, "message": said}}).encode())


def test_the_error_objects_message_loses_what_was_sent() -> None:
    sent: dict[str, JSONValue] = {"user": {"email": "ann@example.org"}, "sms": {"otp": "123456"}}
    said = {"error": {"http_code": 400, "message": "no 123456 for ann@example.org today"}}
    answer = WebhookResponse(200, "application/json", json.dumps(said).encode(), sent)
    with pytest.raises(PermanentHookAnswer) as raised:
        check_answer(answer)
    assert raised.value.message == "no *** for *** today"
    assert str(raised.value) == "the hook answered HTTP 200 with an error: no *** for *** today"


async def test_an_outbox_job_dead_of_an_echoing_hook_keeps_no_address_or_code(
    make_service: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with Receiver(script=echoing) as receiver:
        svc = await make_service(
            mailer_delivery="outbox", outbox_worker_enabled=False, **hooked(receiver)
        )
        address = email()
        assert (await signup(svc, address)).status_code == 200
        outbox = svc.app.state.service.mailer.runtime.outbox
        with caplog.at_level(logging.INFO):
            await outbox.worker(poll_interval=0.01).run(until_empty=True)
        [call] = receiver.requests
        [dead] = [job for job in await outbox.list(JobState.DEAD, 1000) if address in job.payload]
    token = call.json()["email_data"]["token"]
    assert dead.last_error is not None
    assert "cannot mail *** to ***" in dead.last_error
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "cannot mail *** to ***" in logged
    for secret in (token, address):
        assert secret not in dead.last_error
        assert secret not in logged


async def test_inline_the_answer_carries_the_hooks_message_without_the_code(
    make_service: Callable[..., Any],
) -> None:
    async with Receiver(script=echoing) as receiver:
        svc = await make_service(mailer_delivery="inline", **hooked(receiver))
        address = email()
        response = await signup(svc, address)
        [call] = receiver.requests
    assert response.status_code == 422
    assert response.json()["msg"] == "cannot mail *** to ***"
    assert call.json()["email_data"]["token"] not in response.text

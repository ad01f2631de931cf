"""A hook that reports a failure in a 2xx answer and echoes what it was sent (the
address, the one-time code) leaves neither in the logs, the outbox's ``last_error``
or the request's answer: the error object's message is redacted like a non-2xx
answer's text. A long, multi-line message is cut to one line of 300 characters
there, as a non-2xx answer's text is."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from apitask.outbox import Job, JobState
from apitask.webhooks import WebhookResponse
from apitask_auth.delivery.send_hooks import PermanentHookAnswer, check_answer
from integration.webhooks.receiver import Answer, Received, Receiver

from .conftest import email
from .test_send_hooks import hooked, signup

if TYPE_CHECKING:
    from collections.abc import Callable

    from apitask import JSONValue

    from .conftest import Service


# A hook that answers with a stack trace: over 5,000 characters on 230 lines.
FRAMES = "\n".join(f"frame {i} in send_mail" for i in range(230))

# What the error's text and the client keep of it: one line, redacted, 300
# characters and "...", as of a non-2xx answer.
SHOWN = ("cannot mail *** to *** " + FRAMES.replace("\n", " "))[:300] + "..."


def echoing(http_code: int = 422, more: str = "") -> Callable[[int, Received], Answer]:
    """A hook answering GoTrue's error object in a 200, its message quoting the
    call's address and code, then ``more``."""

    def script(n: int, request: Received) -> Answer:
        call = request.json()
        said = f"cannot mail {call['email_data']['token']} to {call['user']['email']}{more}"
        error = {"error": {"http_code": http_code, "message": said}}
        return Answer(200, json.dumps(error).encode())

    return script


async def dead_job(svc: Service) -> tuple[str, Job]:
    """Sign an address up in outbox mode, run the worker until the queue is empty,
    and return the address and its dead hook call."""
    address = email()
    assert (await signup(svc, address)).status_code == 200
    outbox = svc.app.state.service.mailer.runtime.outbox
    await outbox.worker(poll_interval=0.01).run(until_empty=True)
    [dead] = [job for job in await outbox.list(JobState.DEAD, 1000) if address in job.payload]
    return address, dead


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
    async with Receiver(script=echoing()) as receiver:
        svc = await make_service(
            mailer_delivery="outbox", outbox_worker_enabled=False, **hooked(receiver)
        )
        with caplog.at_level(logging.INFO):
            address, dead = await dead_job(svc)
        [call] = receiver.requests
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
    async with Receiver(script=echoing()) as receiver:
        svc = await make_service(mailer_delivery="inline", **hooked(receiver))
        address = email()
        response = await signup(svc, address)
        [call] = receiver.requests
    assert response.status_code == 422
    assert response.json()["msg"] == "cannot mail *** to ***"
    assert call.json()["email_data"]["token"] not in response.text


async def test_a_long_multiline_message_is_stored_and_logged_on_one_bounded_line(
    make_service: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with Receiver(script=echoing(more="\n" + FRAMES)) as receiver:
        svc = await make_service(
            mailer_delivery="outbox", outbox_worker_enabled=False, **hooked(receiver)
        )
        with caplog.at_level(logging.INFO):
            _, dead = await dead_job(svc)
    assert dead.last_error is not None
    assert dead.last_error.endswith(f"the hook answered HTTP 200 with an error: {SHOWN}")
    assert "\n" not in dead.last_error
    logged = [r.getMessage() for r in caplog.records if "cannot mail" in r.getMessage()]
    assert logged
    for line in logged:
        assert line.endswith(SHOWN)
        assert "\n" not in line


@pytest.mark.parametrize("http_code", [422, 500])
async def test_inline_a_long_multiline_message_reaches_the_client_cut_to_one_line(
    make_service: Callable[..., Any], caplog: pytest.LogCaptureFixture, http_code: int
) -> None:
    """GoTrue passes the message whole; we give the client what we log and store,
    since a 5xx answer's message also heads the service's error log line."""
    async with Receiver(script=echoing(http_code, "\n" + FRAMES)) as receiver:
        svc = await make_service(mailer_delivery="inline", **hooked(receiver))
        with caplog.at_level(logging.INFO):
            response = await signup(svc, email())
    assert response.status_code == http_code
    assert response.json()["msg"] == SHOWN
    assert "frame 229" not in "\n".join(record.getMessage() for record in caplog.records)

"""GoTrue's send-email hook, through every delivery mode, against a real receiver.

The receiver (integration/webhooks/receiver.py) is an HTTP server in a thread
that verifies each call with the reference ``standardwebhooks`` package.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import Request  # noqa: TC002  # FastAPI reads the annotation at runtime
from fastapi.responses import JSONResponse

from apitask.outbox import JobState, TaskRegistry
from apitask.webhooks import WebhookResponse
from apitask_auth.accounts.users import get_user
from apitask_auth.config import ConfigError, load_settings
from apitask_auth.delivery.send_hooks import (
    HookAnswerError,
    PermanentHookAnswer,
    SmsHookTexter,
    TransientHookAnswer,
    check_answer,
    register_send_hooks,
)
from integration.webhooks.receiver import OTHER_SECRET, SECRET, Answer, Received, Receiver

from ._accounts import PASSWORD, bearer
from .conftest import NEW_FORMAT, email

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service

MODES = ["inline", "request", "pool", "outbox"]


def hooked(receiver: Receiver, **more: Any) -> dict[str, Any]:
    """Settings that turn the send-email hook on, pointing at ``receiver``."""
    return {
        "hook_send_email_enabled": True,
        "hook_send_email_uri": receiver.url,
        "hook_send_email_secrets": f"v1,{SECRET}",
        **more,
    }


async def signup(svc: Service, address: str) -> Any:
    return await svc.http.post("/signup", json={"email": address, "password": PASSWORD})


async def outbox_payloads(svc: Service) -> list[str]:
    outbox = svc.app.state.service.mailer.runtime.outbox
    return [job.payload for job in await outbox.list(limit=1000)] if outbox else []


@pytest.mark.parametrize("mode", MODES)
async def test_a_signup_calls_the_hook_instead_of_mailing(
    make_service: Callable[..., Any], mode: str
) -> None:
    """GoTrue's payload, signed: the token in it confirms the account; no mail is sent."""
    async with Receiver() as receiver:
        svc = await make_service(mailer_delivery=mode, **hooked(receiver))
        address = email()
        response = await signup(svc, address)
        assert response.status_code == 200, response.text
        [call] = await asyncio.to_thread(receiver.wait_for, 1)
    assert call.verified
    body = call.json()
    assert set(body) == {"metadata", "user", "email_data"}
    assert body["metadata"]["name"] == "send-email"
    assert body["metadata"]["uuid"] == call.webhook_id
    assert body["user"]["email"] == address
    assert body["user"]["id"] == response.json()["id"]
    data = body["email_data"]
    assert data["email_action_type"] == "signup"
    assert data["site_url"] == "http://auth.test"  # the external URL, as GoTrue sends
    assert data["redirect_to"] == "http://localhost:3000"
    assert (data["token_new"], data["token_hash_new"]) == ("", "")
    assert len(data["token"]) == 6 and data["token_hash"]
    assert svc.sent == []  # the hook replaces SMTP
    assert SECRET[6:] not in "".join(await outbox_payloads(svc))
    verified = await svc.http.post(
        "/verify", json={"type": "signup", "email": address, "token": data["token"]}
    )
    assert verified.status_code == 200, verified.text


async def test_inline_a_failing_hook_answers_goTrues_500_and_rolls_back(
    make_service: Callable[..., Any],
) -> None:
    async with Receiver(script=lambda n, r: Answer(503, b"down")) as receiver:
        svc = await make_service(mailer_delivery="inline", **hooked(receiver))
        address = email()
        response = await signup(svc, address)
        again = await signup(svc, address)  # nothing was kept: the same signup runs again
    assert response.status_code == 500
    assert response.json()["msg"] == f"Error running hook URI: {receiver.url}"
    assert response.json()["error_code"] == "unexpected_failure"
    assert again.status_code == 500
    assert len(receiver.requests) == 2
    assert receiver.requests[0].webhook_id != receiver.requests[1].webhook_id


async def test_in_request_mode_a_failing_hook_is_logged_and_the_request_succeeds(
    make_service: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with Receiver(script=lambda n, r: Answer(400, b"unknown template")) as receiver:
        svc = await make_service(mailer_delivery="request", **hooked(receiver))
        with caplog.at_level(logging.ERROR, "apitask.webhooks"):
            response = await signup(svc, email())
    assert response.status_code == 200, response.text
    [record] = [r for r in caplog.records if r.name == "apitask.webhooks"]
    host = receiver.url.split("/")[2]
    assert record.getMessage().endswith(
        f"(final): webhook send-email to {host}: HTTP 400: unknown template"
    )


async def test_inline_the_hooks_error_object_is_the_answer(
    make_service: Callable[..., Any],
) -> None:
    """A 200 carrying GoTrue's ``{"error": {"http_code", "message"}}`` fails the request so."""
    refusal = b'{"error": {"http_code": 422, "message": "mailbox is full"}}'

    def script(n: int, request: Received) -> Answer:
        return Answer(200, refusal, {"content-type": "application/json"})

    async with Receiver(script=script) as receiver:
        svc = await make_service(mailer_delivery="inline", **hooked(receiver))
        response = await svc.http.post(
            "/signup", json={"email": email(), "password": PASSWORD}, headers=NEW_FORMAT
        )
    assert response.status_code == 422
    assert response.json() == {"code": "unknown", "message": "mailbox is full"}


async def test_inline_a_stalled_hook_times_out_with_goTrues_500(
    make_service: Callable[..., Any],
) -> None:
    async with Receiver(script=lambda n, r: Answer(stall=True)) as receiver:
        svc = await make_service(mailer_delivery="inline", hook_timeout="300ms", **hooked(receiver))
        response = await signup(svc, email())
    assert response.status_code == 500
    assert response.json()["msg"].startswith("Error running hook URI: http://127.0.0.1:")


@pytest.mark.parametrize("mode", ["pool", "outbox"])
async def test_pool_and_outbox_do_not_wait_for_a_stalled_hook(
    make_service: Callable[..., Any], mode: str
) -> None:
    """The receiver holds the call until it stops: the answer cannot have waited for it."""
    async with Receiver(script=lambda n, r: Answer(stall=True)) as receiver:
        svc = await make_service(
            mailer_delivery=mode,
            hook_timeout="30s",
            worker_shutdown_duration="100ms",
            **hooked(receiver),
        )
        response = await signup(svc, email())
        assert response.status_code == 200, response.text
        await asyncio.to_thread(receiver.wait_for, 1)
        assert receiver.accepted == {}  # still held when the answer came


@pytest.mark.parametrize("mode", ["pool", "outbox"])
async def test_a_hook_failing_one_call_in_five_gets_every_signup_once_per_id(
    make_service: Callable[..., Any], mode: str
) -> None:
    """Retries bring every call through; a retried call keeps its webhook-id."""
    count = 10

    def script(n: int, request: Received) -> Answer:
        return Answer(500, b"flaky") if n % 5 == 1 else Answer(204)

    async with Receiver(script=script) as receiver:
        svc = await make_service(mailer_delivery=mode, **hooked(receiver))
        addresses = [email() for _ in range(count)]
        for address in addresses:
            assert (await signup(svc, address)).status_code == 200
        accepted = await asyncio.to_thread(receiver.wait_accepted, count)
    assert len(accepted) == count
    assert {calls[0].json()["user"]["email"] for calls in accepted.values()} == set(addresses)
    assert all(request.verified for request in receiver.requests)
    assert len(receiver.requests) > count  # some calls failed and were retried...
    failed_ids = {r.webhook_id for n, r in enumerate(receiver.requests) if n % 5 == 1}
    assert failed_ids <= set(accepted)  # ...and arrived later under the same id


async def test_a_secure_email_change_is_one_call_with_both_codes(
    make_service: Callable[..., Any],
) -> None:
    """GoTrue's shape: token/token_new for the current/new address, the hashes swapped."""
    async with Receiver() as receiver:
        svc = await make_service(
            mailer_notifications_email_changed_enabled=True, **hooked(receiver)
        )
        address, new_address = email(), email()
        assert (await signup(svc, address)).status_code == 200
        [call] = await asyncio.to_thread(receiver.wait_for, 1)
        token = call.json()["email_data"]["token"]
        confirm = {"type": "signup", "email": address, "token": token}
        assert (await svc.http.post("/verify", json=confirm)).status_code == 200
        session = await svc.http.post(
            "/token?grant_type=password", json={"email": address, "password": PASSWORD}
        )
        changed = await svc.http.put(
            "/user", json={"email": new_address}, headers=bearer(session.json())
        )
        assert changed.status_code == 200, changed.text
        [_, call] = await asyncio.to_thread(receiver.wait_for, 2)  # one call, both addresses
        data = call.json()["email_data"]
        assert data["email_action_type"] == "email_change"
        assert call.json()["user"]["new_email"] == new_address
        for token, hash_of, to in (
            ("token", "token_hash_new", address),
            ("token_new", "token_hash", new_address),
        ):
            verified = await svc.http.post(
                "/verify", json={"type": "email_change", "email": to, "token": data[token]}
            )
            assert verified.status_code == 200, verified.text
            assert data[hash_of]
        # The change done, the old address is told, through the hook too.
        notice = (await asyncio.to_thread(receiver.wait_for, 3))[2].json()
    assert len(receiver.requests) == 3
    assert notice["email_data"]["email_action_type"] == "email_changed_notification"
    assert notice["email_data"]["old_email"] == address
    assert notice["user"]["email"] == new_address


@pytest.mark.parametrize(
    ("body", "raised", "status"),
    [
        (b"not json", None, None),
        (b"[1]", None, None),
        (b'{"error": "text"}', None, None),
        (b'{"error": {"message": "boom"}}', TransientHookAnswer, 500),
        (b'{"error": {"http_code": 503, "message": "later"}}', TransientHookAnswer, 503),
        (b'{"error": {"http_code": 429}}', TransientHookAnswer, 429),
        (b'{"error": {"http_code": 200, "message": "odd"}}', TransientHookAnswer, 500),
        (b'{"error": {"http_code": 403, "message": "no"}}', PermanentHookAnswer, 403),
    ],
)
def test_a_2xx_answer_fails_only_with_goTrues_error_object(
    body: bytes, raised: type[Exception] | None, status: int | None
) -> None:
    """A 429/5xx code is retried in the background; another is final."""
    answer = WebhookResponse(200, "application/json", body)
    if raised is None:
        check_answer(answer)
        return
    with pytest.raises(raised) as caught:
        check_answer(answer)
    assert isinstance(caught.value, HookAnswerError)
    assert caught.value.http_code == status


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "GOTRUE_HOOK_SEND_EMAIL_URI: required when GOTRUE_HOOK_SEND_EMAIL_ENABLED"),
        ({"uri": "pg-functions://postgres/auth/hook"}, "pg-functions hooks are not supported"),
        ({"uri": "http://hooks.example.com/x"}, "only localhost, 127.0.0.1, and ::1"),
        ({"uri": "ftp://localhost/x"}, "GOTRUE_HOOK_SEND_EMAIL_URI: expected an https:// URL"),
        ({"uri": "https://h.example"}, "GOTRUE_HOOK_SEND_EMAIL_SECRETS: at least one secret"),
        (
            {"uri": "https://h.example", "secrets": f"v1,{SECRET}|v1a,whpk_abc"},
            "secret 2: asymmetric",
        ),
        ({"uri": "https://h.example", "secrets": SECRET}, "secret 1: expected v1,whsec_"),
        ({"uri": "https://h.example", "secrets": "v1,whsec_c2hvcnQ="}, "at least 16 bytes"),
    ],
)
def test_an_enabled_hook_is_checked_at_start(overrides: dict[str, str], message: str) -> None:
    values: dict[str, Any] = {f"hook_send_email_{key}": v for key, v in overrides.items()}
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(
            env_file=None,
            site_url="http://localhost:3000",
            api_external_url="http://auth.test",
            jwt_secret="x" * 32,
            hook_send_email_enabled=True,
            **values,
        )
    assert "c2hvcnQ" not in str(raised.value)  # a secret is never echoed


def test_a_worker_registry_gets_each_enabled_hook_and_its_rotated_secrets() -> None:
    settings = load_settings(
        env_file=None,
        site_url="http://localhost:3000",
        api_external_url="http://auth.test",
        jwt_secret="x" * 32,
        hook_send_email_enabled=True,
        hook_send_email_uri="https://hooks.example/email",
        hook_send_email_secrets=f"v1,{SECRET} | v1,{OTHER_SECRET}",
        hook_send_sms_uri="https://hooks.example/sms",  # not enabled: not registered
    )
    registry = TaskRegistry()
    [hook] = register_send_hooks(settings, registry)
    assert hook.task_type in registry and "webhook.send-sms" not in registry
    assert repr(hook.client) == "<HTTPWebhookClient with 2 secret(s), timeout 5s>"
    asyncio.run(hook.aclose())


# -- the send-SMS hook ------------------------------------------------------------------


def sms_hooked(receiver: Receiver, **more: Any) -> dict[str, Any]:
    """Settings that turn the send-SMS hook on, pointing at ``receiver``."""
    return {
        "hook_send_sms_enabled": True,
        "hook_send_sms_uri": receiver.url,
        "hook_send_sms_secrets": f"v1,{OTHER_SECRET}|v1,{SECRET}",
        **more,
    }


class _Rollback(Exception):
    pass


def add_text_route(svc: Service) -> None:
    """``POST /_test/text {user_id, phone, code, rollback?}``: a phone flow's shape."""
    service = svc.app.state.service

    async def text(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            async with service.engine.begin() as conn:
                user = await get_user(conn, body["user_id"])
                assert user is not None
                await service.texter.send(body["phone"], body["code"], user=user, connection=conn)
                if body.get("rollback"):
                    raise _Rollback
        except _Rollback:
            return JSONResponse({"rolled_back": True})
        return JSONResponse({})

    svc.app.add_api_route("/_test/text", text, methods=["POST"])


async def texting(make_service: Callable[..., Any], receiver: Receiver, **more: Any) -> Any:
    svc = await make_service(mailer_autoconfirm=True, **sms_hooked(receiver, **more))
    add_text_route(svc)
    signed_up = await signup(svc, email())
    assert signed_up.status_code == 200, signed_up.text
    return svc, signed_up.json()["user"]["id"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_text_calls_the_sms_hook_instead_of_a_provider(
    make_service: Callable[..., Any], mode: str
) -> None:
    """GoTrue's ``{metadata, user, sms: {otp}}``, verifiable with either rotated secret."""
    async with Receiver() as receiver:
        svc, user_id = await texting(make_service, receiver, mailer_delivery=mode)
        assert isinstance(svc.app.state.service.texter, SmsHookTexter)
        sent = await svc.http.post(
            "/_test/text", json={"user_id": user_id, "phone": "15551234567", "code": "424242"}
        )
        assert sent.status_code == 200, sent.text
        [call] = await asyncio.to_thread(receiver.wait_for, 1)
    assert call.verified
    body = call.json()
    assert body["sms"] == {"otp": "424242"}
    assert body["user"]["id"] == user_id
    assert body["metadata"]["name"] == "send-sms"
    assert body["metadata"]["uuid"] == call.webhook_id
    assert len(call.headers["webhook-signature"].split(" ")) == 2


async def test_in_outbox_mode_the_call_commits_with_the_flow(
    make_service: Callable[..., Any],
) -> None:
    """A rolled-back flow leaves no call behind; a committed one is delivered, and its
    job keeps no code once it succeeded."""
    async with Receiver() as receiver:
        svc, user_id = await texting(
            make_service, receiver, mailer_delivery="outbox", outbox_worker_enabled=False
        )
        for code, rollback in (("111111", True), ("222222", False)):
            answer = await svc.http.post(
                "/_test/text",
                json={
                    "user_id": user_id,
                    "phone": "15551234567",
                    "code": code,
                    "rollback": rollback,
                },
            )
            assert answer.status_code == 200
        outbox = svc.app.state.service.mailer.runtime.outbox
        # This user's jobs (PostgreSQL tests share a database): none for the rollback.
        [job] = [
            job
            for job in await outbox.list(limit=1000)
            if job.type == "webhook.send-sms" and user_id in job.payload
        ]
        assert "222222" in job.payload
        assert SECRET[6:] not in job.payload and OTHER_SECRET[6:] not in job.payload
        await outbox.worker(poll_interval=0.01).run(until_empty=True)
        await asyncio.to_thread(receiver.wait_accepted, 1)
        [done] = [found for found in await outbox.list(limit=1000) if found.id == job.id]
    assert [r.json()["sms"]["otp"] for r in receiver.requests] == ["222222"]
    assert (done.state, done.payload) == (JobState.SUCCEEDED, "{}")  # the code is erased


async def test_inline_a_failing_sms_hook_answers_goTrues_500(
    make_service: Callable[..., Any],
) -> None:
    async with Receiver(script=lambda n, r: Answer(500)) as receiver:
        svc, user_id = await texting(make_service, receiver, mailer_delivery="inline")
        sent = await svc.http.post(
            "/_test/text", json={"user_id": user_id, "phone": "15551234567", "code": "1"}
        )
    assert sent.status_code == 500
    assert sent.json()["msg"] == f"Error running hook URI: {receiver.url}"


async def test_the_sms_hook_failing_one_call_in_five_gets_every_code_through_the_outbox(
    make_service: Callable[..., Any],
) -> None:
    def script(n: int, request: Received) -> Answer:
        return Answer(503, b"later") if n % 5 == 0 else Answer(200)

    async with Receiver(script=script) as receiver:
        svc, user_id = await texting(make_service, receiver, mailer_delivery="outbox")
        codes = [f"{n:06d}" for n in range(10)]
        for code in codes:
            answer = await svc.http.post(
                "/_test/text", json={"user_id": user_id, "phone": "15551234567", "code": code}
            )
            assert answer.status_code == 200
        accepted = await asyncio.to_thread(receiver.wait_accepted, len(codes))
    assert sorted(calls[0].json()["sms"]["otp"] for calls in accepted.values()) == codes
    assert {r.webhook_id for r in receiver.requests} == set(accepted)  # retries kept their id
    assert len(receiver.requests) > len(codes)

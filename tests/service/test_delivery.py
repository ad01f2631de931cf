"""Where the service delivers mail in each mode, in-process (lifespan running).

The transport is a client the test controls: it can hold a send until the test
releases it, or fail. What is asserted is what a client of the API can see:
when the response arrives relative to the send, what the database holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import text

from apitask.mail import Message, PermanentMailError, RecordingClient
from apitask.outbox import JobState
from apitask_auth.app import create_app
from apitask_auth.config import load_settings
from apitask_auth.storage.migrations import migrate_all

from .conftest import SECRET, email

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

    from apitask.outbox import Outbox

    from .conftest import Service

PASSWORD = "secret-password"


class GatedClient(RecordingClient):
    """Records a mail only once :attr:`release` is set; :attr:`entered` says a send began."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.entered.set()
        await self.release.wait()
        await super().send(message)


class FailingClient:
    """Refuses every mail, as a mail server answering 550 would."""

    async def send(self, message: Message) -> None:
        raise PermanentMailError("550 mailbox unavailable", code=550)


def _signup(svc: Service, address: str) -> Any:
    return svc.http.post("/signup", json={"email": address, "password": PASSWORD})


async def _user_exists(svc: Service, address: str) -> bool:
    listed = await svc.http.get("/admin/users", headers=svc.admin_headers())
    return address in {user["email"] for user in listed.json()["users"]}


async def _service(make_service: Callable[..., Any], transport: Any, **settings: Any) -> Service:
    svc: Service = await make_service(transport=transport, **settings)
    return svc


async def test_inline_sends_before_the_response(make_service: Callable[..., Any]) -> None:
    """Inline: the mail is delivered by the time the response arrives."""
    svc: Service = await make_service(mailer_delivery="inline")
    address = email()
    assert (await _signup(svc, address)).status_code == 200
    assert [mail.to for mail in svc.sent] == [address]


async def test_inline_failure_is_gotrue_500_and_rolls_back(
    make_service: Callable[..., Any],
) -> None:
    """Inline: a refused mail is GoTrue's 500 and the user and token are not stored."""
    svc = await _service(make_service, FailingClient(), mailer_delivery="inline")
    address = email()
    response = await _signup(svc, address)
    assert response.status_code == 500
    assert response.json()["msg"] == "Error sending confirmation email"
    assert not await _user_exists(svc, address)


async def test_request_mode_holds_the_response_until_the_mail_is_sent(
    make_service: Callable[..., Any],
) -> None:
    """Request: the send runs concurrently; the response waits for it to finish."""
    gate = GatedClient()
    svc = await _service(make_service, gate, mailer_delivery="request")
    address = email()
    signup = asyncio.create_task(_signup(svc, address))
    await gate.entered.wait()
    # The user's transaction has committed (the send is off the transaction)...
    assert await _user_exists(svc, address)
    # ...but the response is still held for the send.
    assert not signup.done()
    gate.release.set()
    assert (await signup).status_code == 200
    assert [mail.to for mail in gate.messages] == [address]


async def test_request_mode_failure_is_logged_not_returned(
    make_service: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Request: a refused mail is logged with its task type; the sign-up succeeds (GoTrue)."""
    svc = await _service(make_service, FailingClient(), mailer_delivery="request")
    address = email()
    with caplog.at_level(logging.ERROR):
        assert (await _signup(svc, address)).status_code == 200
    assert await _user_exists(svc, address)
    assert "mailer.confirmation" in caplog.text
    assert "550 mailbox unavailable" in caplog.text


async def test_pool_mode_answers_before_the_mail_is_sent(
    make_service: Callable[..., Any],
) -> None:
    """Pool: the response does not wait; the pool's worker sends the mail afterwards."""
    gate = GatedClient()
    svc = await _service(make_service, gate, mailer_delivery="pool")
    address = email()
    assert (await _signup(svc, address)).status_code == 200
    await gate.entered.wait()
    assert gate.messages == []
    gate.release.set()
    assert (await gate.wait_for(to=address)).type == "confirmation"


async def test_pool_spills_what_the_drain_could_not_send_to_the_outbox(
    database_url: str,
) -> None:
    """Pool: a mail still unsent at the drain deadline is stored in the outbox, and
    the next start's outbox worker sends it (same Message-ID)."""
    settings: dict[str, Any] = {
        "mailer_delivery": "pool",
        "database_url": database_url,
        "site_url": "http://localhost:3000",
        "api_external_url": "http://auth.test",
        "jwt_secret": SECRET,
    }
    stuck = GatedClient()  # never released: the send outlives the deadline
    app = await asyncio.to_thread(
        create_app,
        load_settings(
            env_file=None, worker_shutdown_duration="0s", outbox_worker_enabled=False, **settings
        ),
        transport=stuck,
    )
    await migrate_all(app.state.service.engine, database_url)
    address = email()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        response = await http.post("/signup", json={"email": address, "password": PASSWORD})
        assert response.status_code == 200
        await stuck.entered.wait()
    report = app.state.service.mailer.runtime.pool.report
    assert [leftover.spilled for leftover in report.leftovers] == [True]

    later = RecordingClient()
    app = await asyncio.to_thread(
        create_app, load_settings(env_file=None, **settings), transport=later
    )
    async with app.router.lifespan_context(app):
        sent = await later.wait_for(to=address, timeout=10)
    assert sent.type == "confirmation"
    assert sent.message_id == report.leftovers[0].payload["message"]["message_id"]


async def _jobs_for(outbox: Outbox, address: str) -> list[Message]:
    jobs = await outbox.list(limit=10_000)
    return [
        Message.from_dict(payload["message"])
        for payload in (json.loads(job.payload) for job in jobs)
        if "message" in payload and payload["message"]["to"] == address  # succeeded: "{}"
    ]


async def test_outbox_job_row_commits_with_the_sign_up(
    make_service: Callable[..., Any],
) -> None:
    """Outbox: the sign-up's transaction holds the job row; it is the final message."""
    svc: Service = await make_service(mailer_delivery="outbox", outbox_worker_enabled=False)
    outbox = svc.app.state.service.mailer.runtime.outbox
    address = email()
    assert (await _signup(svc, address)).status_code == 200
    (stored,) = await _jobs_for(outbox, address)
    assert stored.type == "confirmation"
    assert "enter this code: " in stored.text
    assert svc.sent == []  # no worker in this process: nothing sent yet


async def test_outbox_rollback_drops_the_job_with_the_user(
    make_service: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outbox: a failure after the enqueue rolls back the user, the token and the job."""
    svc: Service = await make_service(mailer_delivery="outbox", outbox_worker_enabled=False)
    outbox = svc.app.state.service.mailer.runtime.outbox
    address = email()

    async def audit_fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the audit log is full")

    monkeypatch.setattr("apitask_auth.routes.auth.audit", audit_fails)
    response = await _signup(svc, address)
    monkeypatch.undo()
    assert (response.status_code, response.json()["error_code"]) == (500, "unexpected_failure")
    assert await _jobs_for(outbox, address) == []
    assert not await _user_exists(svc, address)


async def test_outbox_worker_in_process_sends_the_mail(
    make_service: Callable[..., Any],
) -> None:
    """Outbox with the in-process worker (the default): the mail is sent after commit;
    the worker's claims last GOTRUE_OUTBOX_WORKER_LEASE."""
    svc: Service = await make_service(mailer_delivery="outbox", outbox_worker_lease="7s")
    worker = svc.app.state.service.mailer.runtime.worker
    assert worker is not None
    assert worker.lease == 7.0
    address = email()
    assert (await _signup(svc, address)).status_code == 200
    sent = await svc.mail.wait_for(to=address, timeout=10)
    assert sent.type == "confirmation"


async def test_a_sent_mail_job_keeps_its_metadata_not_the_mail(
    make_service: Callable[..., Any],
) -> None:
    """Outbox: once the mail is sent, its job row no longer holds the address, the code
    or the link; its type, attempts, times and request id stay."""
    svc: Service = await make_service(mailer_delivery="outbox", outbox_worker_enabled=False)
    outbox = svc.app.state.service.mailer.runtime.outbox
    address = email()
    request_id = f"req-{address}"  # PostgreSQL tests share one database: find ours
    response = await svc.http.post(
        "/signup",
        json={"email": address, "password": PASSWORD},
        headers={"X-Request-Id": request_id},
    )
    assert response.status_code == 200
    (stored,) = await _jobs_for(outbox, address)
    await outbox.worker(poll_interval=0.01).run(until_empty=True)
    sent = await svc.mail.wait_for(to=address, timeout=10)
    assert sent.message_id == stored.message_id  # the stored mail was the one sent
    (job,) = [job for job in await outbox.list(limit=10_000) if job.request_id == request_id]
    assert job.payload == "{}"
    assert (job.type, job.state, job.attempts, job.request_id) == (
        "mailer.confirmation",
        JobState.SUCCEEDED,
        1,
        request_id,
    )
    assert job.finished_at is not None
    async with svc.app.state.service.engine.connect() as conn:
        query = text("SELECT payload FROM apitask_jobs WHERE request_id = :id")
        rows = (await conn.execute(query, {"id": request_id})).scalars().all()
    assert rows == ["{}"]
    assert svc.otp(address) not in str(rows)


async def test_pool_overflow_goes_to_the_outbox_in_the_flows_transaction(
    make_service: Callable[..., Any],
) -> None:
    """Pool with a full queue: the mail is neither sent inline (inside the flow's
    transaction) nor refused; its job row is written with the sign-up instead."""
    gate = GatedClient()  # the pool's workers stay busy until released
    svc = await _service(
        make_service,
        gate,
        mailer_delivery="pool",
        worker_count_per_cpu=1,
        worker_queue_size=1,
        outbox_worker_enabled=False,
    )
    workers = svc.app.state.service.mailer.runtime.pool.workers
    addresses = [email() for _ in range(2 * workers + 4)]
    for address in addresses:
        assert (await _signup(svc, address)).status_code == 200
    assert gate.messages == []  # nothing was sent inline: every send is still held
    outbox = svc.app.state.service.mailer.runtime.outbox
    stored = {address for address in addresses if await _jobs_for(outbox, address)}
    # At most one per worker plus the one queue slot stayed in the pool.
    assert len(stored) >= len(addresses) - (workers + 1)
    gate.release.set()
    for address in set(addresses) - stored:
        assert (await gate.wait_for(to=address)).type == "confirmation"
    assert {message.to for message in gate.messages}.isdisjoint(stored)
    # An outbox worker sends the overflow (and leaves no queued job behind for
    # the next test on a shared database).
    await outbox.worker(concurrency=4, poll_interval=0.05).run(until_empty=True)
    for address in stored:
        assert (await gate.wait_for(to=address)).type == "confirmation"

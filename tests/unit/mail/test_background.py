"""BackgroundClient: where the mail goes is the scope's choice, and failures are never silent.

Shown inline (no scope), in a request scope (``apitask.scope`` and the ASGI
middleware under httpx), in a worker pool (with its retries), and from sync
code. Ordering uses asyncio.Event, never sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httpx
import pytest

import apitask

# open_outbox imports its backend lazily, and that import reads the SQL files:
# import it here, not on the event loop.
import apitask.outbox.sqlite
from apitask import Backoff, LeftoverState, Outcome, TaskCounters, TaskError, WorkerPool
from apitask.asgi import TaskMiddleware
from apitask.mail import (
    BackgroundClient,
    MailTask,
    Message,
    PermanentMailError,
    RecordingClient,
    TransientMailError,
)
from apitask.outbox import TaskRegistry, open_outbox
from apitask.wsgi import TaskMiddleware as WSGITaskMiddleware

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from apitask._types import Receive, Scope, Send


def mail(to: str = "ann@example.org", type: str = "recovery") -> Message:
    return Message(to=to, subject="Reset", text="code 424242", type=type)


class Gated(RecordingClient):
    """Records a mail only once ``release`` is set; ``started`` says a send began."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.started.set()
        await self.release.wait()
        await super().send(message)


class Flaky(RecordingClient):
    """Raises the scripted errors on the first sends, then records."""

    def __init__(self, *errors: Exception) -> None:
        super().__init__()
        self.errors = list(errors)
        self.attempts = 0

    async def send(self, message: Message) -> None:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        await super().send(message)


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "apitask.mail"]


async def test_outside_a_scope_it_sends_inline_and_raises() -> None:
    counters = TaskCounters()
    client = Flaky(PermanentMailError("550 mailbox unavailable", code=550))
    background = BackgroundClient(client, counters=counters)
    with pytest.raises(PermanentMailError, match="550"):
        await background.send(mail())
    await background.send(mail())  # the second send goes through, inline
    assert len(client.messages) == 1
    assert counters.snapshot() == {"recovery": {"failed": 1, "succeeded": 1}}


async def test_in_a_request_scope_send_returns_at_once_and_the_scope_waits() -> None:
    client = Gated()
    background = BackgroundClient(client)
    async with apitask.scope() as scope:
        await background.send(mail())
        assert scope.pending == 1
        await client.started.wait()
        assert client.messages == []  # send returned while the mail is in flight
        client.release.set()
    assert len(client.messages) == 1  # leaving the scope waited for it


async def test_a_background_failure_is_logged_counted_and_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counters = TaskCounters()
    client = Flaky(TransientMailError("421 too busy", code=421))
    background = BackgroundClient(client, counters=counters)
    with caplog.at_level(logging.ERROR):
        async with apitask.scope(request_id="req-7"):
            await background.send(mail("bob@mail.example.net"))
            report = await apitask.wait()
    assert (report.succeeded, report.failed) == (0, 1)
    assert counters.get("recovery", Outcome.FAILED) == 1  # unlike GoTrue: counted
    assert failure_lines(caplog) == [
        "mail: recovery mail to a recipient at mail.example.net not sent "
        "(transient, may be retried): 421 too busy"
    ]
    [runner] = [r for r in caplog.records if r.name == "apitask"]
    assert (runner.__dict__["task_type"], runner.__dict__["request_id"]) == (
        "mailer.recovery",
        "req-7",
    )
    assert all("bob@" not in r.getMessage() for r in caplog.records)


async def test_after_the_scope_was_waited_send_raises_and_sends_nothing() -> None:
    client = RecordingClient()
    background = BackgroundClient(client)
    async with apitask.scope():
        await apitask.wait()
        with pytest.raises(TaskError, match=r"mailer\.recovery"):
            await background.send(mail())
    assert client.messages == []


async def test_under_the_asgi_middleware_the_response_waits_and_never_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The handler's send returns at once; the response ends after the mail, even a failed one."""
    client = Flaky(PermanentMailError("554 rejected", code=554))
    background = BackgroundClient(client)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await background.send(mail(type=scope["path"].strip("/")))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    transport = httpx.ASGITransport(app=TaskMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://auth") as http:
        with caplog.at_level(logging.ERROR):
            failed = await http.post("/recovery")
        sent = await http.post("/invite")
    assert (failed.status_code, sent.status_code) == (200, 200)
    assert failure_lines(caplog) == [
        "mail: recovery mail to a recipient at example.org not sent (final): 554 rejected"
    ]
    # before_response: by the time the client has the response, the mail is out.
    assert [m.type for m in client.messages] == ["invite"]


async def test_in_a_pool_transient_failures_are_retried_and_permanent_ones_not() -> None:
    counters = TaskCounters()
    flaky = Flaky(
        TransientMailError("421 try later", code=421), TransientMailError("timeout reading reply")
    )
    refused = Flaky(PermanentMailError("550 no such user", code=550))
    async with WorkerPool(workers=2, backoff=Backoff(base=0.001, cap=0.002)) as pool:
        async with apitask.scope(sink=pool):
            await BackgroundClient(flaky, counters=counters).send(mail())
            await BackgroundClient(refused, counters=counters).send(mail(type="invite"))
        delivered = await flaky.wait_for(type="recovery")
    assert delivered.type == "recovery"
    assert (flaky.attempts, refused.attempts) == (3, 1)
    assert refused.messages == []
    assert counters.snapshot() == {
        "recovery": {"failed": 2, "succeeded": 1},
        "invite": {"failed": 1},
    }
    tasks = pool.counters
    assert tasks.get("mailer.recovery", Outcome.RETRIED) == 2
    assert tasks.get("mailer.recovery", Outcome.SUCCEEDED) == 1
    assert tasks.get("mailer.invite", Outcome.FAILED) == 1
    assert tasks.get("mailer.invite", Outcome.RETRIED) == 0


async def test_a_closed_pool_refuses_the_mail_with_an_error() -> None:
    pool = WorkerPool(workers=1)
    async with pool:
        pass
    async with apitask.scope(sink=pool):
        with pytest.raises(TaskError, match=r"mailer\.recovery"):
            await BackgroundClient(RecordingClient()).send(mail())


async def test_the_task_it_builds_is_a_durable_mail_task() -> None:
    client, counters = RecordingClient(), TaskCounters()
    task = BackgroundClient(client, counters=counters).task(mail())
    assert isinstance(task, MailTask)
    assert (task.client, task.counters, task.type) == (client, counters, "mailer.recovery")


async def test_send_sync_from_a_thread_sends_inline_and_raises() -> None:
    client = Flaky(PermanentMailError("550 no", code=550))
    background = BackgroundClient(client, counters=TaskCounters())
    with pytest.raises(PermanentMailError):
        await asyncio.to_thread(background.send_sync, mail())
    await asyncio.to_thread(background.send_sync, mail())
    assert len(client.messages) == 1


def test_send_sync_in_a_wsgi_request_runs_in_the_background_of_the_request() -> None:
    """A Flask-style view hands the mail over; the response ends after it was sent."""
    client = RecordingClient()
    background = BackgroundClient(client, counters=TaskCounters())

    def view(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        background.send_sync(mail(type=environ["PATH_INFO"].strip("/")))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    with httpx.Client(transport=httpx.WSGITransport(app=WSGITaskMiddleware(view))) as http:
        assert http.post("http://auth/magic_link").status_code == 200
    assert [m.type for m in client.messages] == ["magic_link"]


async def test_in_a_scope_bound_to_the_outbox_the_mail_is_stored_then_sent(
    tmp_path: Path,
) -> None:
    """The request only writes a job row; an outbox worker sends the same message later."""
    never = RecordingClient()  # the request side never sends
    sender = RecordingClient()
    registry = TaskRegistry()
    registry.register_prefix("mailer.", MailTask.factory(sender))
    message = mail()
    async with open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}", registry) as outbox:
        await outbox.migrate()
        async with apitask.scope(sink=outbox.sink):
            await BackgroundClient(never).send(message)
        [job] = await outbox.list()
        assert job.type == "mailer.recovery"
        await outbox.worker().run(until_empty=True)
    assert never.messages == []
    assert sender.messages == [message]  # same Message-ID: receivers can de-duplicate


async def test_mail_left_in_a_draining_pool_spills_to_the_outbox_and_is_sent(
    tmp_path: Path,
) -> None:
    """What the pool cannot send before its deadline is stored, not lost."""
    stuck = Gated()  # the first mail hangs on the "server"; the second waits in the queue
    sender = RecordingClient()
    registry = TaskRegistry()
    registry.register_prefix("mailer.", MailTask.factory(sender))
    first, second = mail("ann@example.org"), mail("bob@example.org", type="invite")
    async with open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}", registry) as outbox:
        await outbox.migrate()
        pool = WorkerPool(workers=1, shutdown_timeout=0, spill=outbox.sink)
        async with pool:
            async with apitask.scope(sink=pool):
                await BackgroundClient(stuck).send(first)
                await BackgroundClient(stuck).send(second)
            await stuck.started.wait()
        assert pool.report is not None
        states = {left.type: (left.state, left.spilled) for left in pool.report.leftovers}
        assert states == {
            "mailer.recovery": (LeftoverState.CANCELLED, True),
            "mailer.invite": (LeftoverState.QUEUED, True),
        }
        await outbox.worker().run(until_empty=True)
    assert stuck.messages == []
    assert sorted(sender.messages, key=lambda m: m.to) == [first, second]

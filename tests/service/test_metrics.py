"""GET /metrics: a real app is scraped after it sent mail, texts and hook calls."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apitask.mail import Message, PermanentMailError, RecordingClient
from apitask_auth.config import ConfigError, load_settings
from apitask_auth.routes import metrics as service_metrics
from integration.mail.smtp_server import MailServer, client_for, start_server
from integration.webhooks.receiver import SECRET, Answer, Receiver

from ._twilio import TwilioServer
from .conftest import email

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from .conftest import Service

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class CountingDown(RecordingClient):
    """Records mail; :attr:`done` is set once ``n`` mails were recorded."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n
        self.done = asyncio.Event()

    async def send(self, message: Message) -> None:
        await super().send(message)
        self.left -= 1
        if not self.left:
            self.done.set()  # last: the task counts its outcome before anyone wakes


class Refusing(CountingDown):
    """Refuses every mail (a 550), after counting it down."""

    async def send(self, message: Message) -> None:
        self.left -= 1
        if not self.left:
            self.done.set()
        raise PermanentMailError("550 mailbox unavailable", code=550)


async def scrape(svc: Service) -> Samples:
    response = await svc.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    sample = key(name, **labels)
    return after.get(sample, 0) - before.get(sample, 0)


async def _signup(svc: Service, address: str) -> int:
    response = await svc.http.post("/signup", json={"email": address, "password": "secret-pw"})
    return response.status_code


async def test_metrics_are_off_unless_enabled(svc: Service) -> None:
    assert (await svc.http.get("/metrics")).status_code == 404


@pytest.mark.parametrize("mode", ["inline", "request", "pool"])
async def test_sent_mail_moves_gotrue_and_apitask_counters(
    make_service: Callable[..., Any], mode: str
) -> None:
    client = CountingDown(3)
    svc: Service = await make_service(transport=client, mailer_delivery=mode, metrics_enabled=True)
    before = await scrape(svc)
    for _ in range(3):
        assert await _signup(svc, email()) == 200
    await client.done.wait()
    after = await scrape(svc)
    confirmation = {"type": "confirmation"}
    assert moved(before, after, "global_auth_email_send_operations_total", **confirmation) == 3
    assert moved(before, after, "apitask_mail_sent_total", **confirmation) == 3
    assert moved(before, after, "global_auth_email_send_errors_total", **confirmation) == 0
    if mode == "pool":
        source = {"source": "pool:delivery", "type": "mailer.confirmation"}
        assert moved(before, after, "apitask_tasks_total", **source, outcome="succeeded") == 3
        assert after[key("apitask_pool_queue_depth", pool="delivery")] == 0
        assert after[key("apitask_pool_oldest_queued_age_seconds", pool="delivery")] == 0
        assert after[key("apitask_pool_state", pool="delivery", state="running")] == 1
        # The outbox (for spills) was counted once at start: nothing is in it.
        assert key("apitask_outbox_stats_age_seconds") in after
    elif mode == "request":
        source = {"source": "scope", "type": "mailer.confirmation"}
        assert moved(before, after, "apitask_tasks_total", **source, outcome="succeeded") == 3


@pytest.mark.parametrize("mode", ["inline", "pool"])
async def test_failed_mail_moves_the_error_counter(
    make_service: Callable[..., Any], mode: str
) -> None:
    client = Refusing(2)
    svc: Service = await make_service(transport=client, mailer_delivery=mode, metrics_enabled=True)
    before = await scrape(svc)
    statuses = [await _signup(svc, email()) for _ in range(2)]
    await client.done.wait()
    # GoTrue: inline answers 500; in the background the sign-up succeeds.
    assert statuses == ([500, 500] if mode == "inline" else [200, 200])
    after = await scrape(svc)
    confirmation = {"type": "confirmation"}
    assert moved(before, after, "global_auth_email_send_operations_total", **confirmation) == 2
    assert moved(before, after, "global_auth_email_send_errors_total", **confirmation) == 2
    assert moved(before, after, "apitask_mail_sent_total", **confirmation) == 0


async def test_with_metrics_on_a_mail_500_is_still_logged_with_its_cause(
    make_service: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The metrics' own APIError handler logs a 500 as the default one does
    (it used to answer without a log line)."""
    svc: Service = await make_service(
        transport=Refusing(1), mailer_delivery="inline", metrics_enabled=True
    )
    with caplog.at_level(logging.ERROR, logger="apitask_auth"):
        assert await _signup(svc, email()) == 500
    (record,) = [r for r in caplog.records if r.name == "apitask_auth"]
    assert record.getMessage().startswith("Error sending confirmation email on POST /signup")
    assert "550 mailbox unavailable" in record.getMessage()


async def test_the_email_limiter_counts_its_refusals_by_path(
    make_service: Callable[..., Any],
) -> None:
    svc: Service = await make_service(rate_limit_email_sent="1", metrics_enabled=True)
    address = email()
    assert await _signup(svc, address) == 200
    assert await _signup(svc, email()) == 429
    recover = await svc.http.post("/recover", json={"email": address})
    assert recover.status_code == 429
    samples = await scrape(svc)
    assert samples[key("gotrue_email_rate_limit_counter_total", path="/signup")] == 1
    assert samples[key("gotrue_email_rate_limit_counter_total", path="/recover")] == 1


@pytest.fixture
async def smtp_server() -> AsyncIterator[MailServer]:
    """An aiosmtpd server, closed after the service (set up later) has stopped."""
    server = await start_server()
    yield server
    await server.close()


async def test_smtp_latency_histogram_and_outbox_worker(
    smtp_server: MailServer, make_service: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    refreshed = asyncio.Event()
    monkeypatch.setattr(service_metrics, "REFRESH_SECONDS", 0.01)
    svc: Service = await make_service(
        transport=client_for(smtp_server), mailer_delivery="outbox", metrics_enabled=True
    )
    collector = svc.app.state.metrics.tasks
    original = collector.refresh

    async def refresh() -> None:
        await original()
        refreshed.set()

    monkeypatch.setattr(collector, "refresh", refresh)
    address = email()
    assert await _signup(svc, address) == 200
    sent = key("apitask_smtp_sends_total", client="default", outcome="sent")
    worker = key(
        "apitask_tasks_total",
        source="outbox-worker",
        type="mailer.confirmation",
        outcome="succeeded",
    )
    jobs = key("apitask_outbox_jobs", type="mailer.confirmation", state="succeeded")

    def arrived() -> bool:
        return any(address.encode() in data for data in smtp_server.messages)

    async def settled() -> Samples | None:
        # The client counts a send after the server's reply; the worker marks
        # the job succeeded after counting it: wait for all three.
        samples = await scrape(svc)
        done = arrived() and all(samples.get(k, 0) >= 1 for k in (sent, worker, jobs))
        return samples if done else None

    while (after := await settled()) is None:
        refreshed.clear()
        await refreshed.wait()  # the next refresh, every 10 ms here
    # A shared PostgreSQL database may hold other tests' jobs: counts are at least ours.
    assert after[key("apitask_smtp_send_seconds_count", client="default")] == after[sent]
    assert (
        after[key("apitask_smtp_send_seconds_bucket", client="default", le="+Inf")] == after[sent]
    )


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("metrics_exporter", "opentelemetry", "only the prometheus exporter"),
        ("log_format", "xml", "json or text"),
        ("log_level", "loud", "one of debug"),
    ],
)
def test_observability_settings_are_checked(setting: str, value: str, message: str) -> None:
    overrides: dict[str, Any] = {setting: value}
    with pytest.raises(ConfigError, match=message):
        load_settings(env_file=None, jwt_secret="s" * 32, **overrides)


# -- texts and send-hook calls, counted as mail is ----------------------------------------


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioServer]:
    async with TwilioServer() as server:
        yield server


def _phone() -> str:
    return "+1555" + str(secrets.randbelow(10**7)).zfill(7)


async def _otp(svc: Service, phone: str) -> int:
    return (await svc.http.post("/otp", json={"phone": phone})).status_code


async def test_texts_move_the_sms_counters(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    """Request mode (the response waits for the text): one delivered, one refused by
    the provider (a permanent 400): handed 2, sent 1, errors 1, by purpose."""
    svc: Service = await make_service(
        **twilio.settings(),
        external_phone_enabled=True,
        mailer_delivery="request",
        metrics_enabled=True,
    )
    before = await scrape(svc)
    twilio.script(201, 400)
    assert [await _otp(svc, _phone()) for _ in range(2)] == [200, 200]
    after = await scrape(svc)
    otp = {"purpose": "otp"}
    assert moved(before, after, "apitask_sms_send_operations_total", **otp) == 2
    assert moved(before, after, "apitask_sms_sent_total", **otp) == 1
    assert moved(before, after, "apitask_sms_send_errors_total", **otp) == 1
    source = {"source": "scope", "type": "sms.otp"}
    assert moved(before, after, "apitask_tasks_total", **source, outcome="succeeded") == 1
    # No mail went anywhere: the mail counters did not move.
    assert moved(before, after, "global_auth_email_send_operations_total", type="otp") == 0


async def test_the_shared_pool_is_labelled_delivery_and_runs_texts(
    make_service: Callable[..., Any], twilio: TwilioServer
) -> None:
    """Pool mode: a text held by the provider is running on the one pool, which
    is labelled "delivery" (it used to be "mail"), and counted as started there."""
    svc: Service = await make_service(
        **twilio.settings(),
        external_phone_enabled=True,
        mailer_delivery="pool",
        metrics_enabled=True,
    )
    before = await scrape(svc)
    twilio.script("hold")
    assert await _otp(svc, _phone()) == 200
    await twilio.arrived.wait()
    during = await scrape(svc)
    source = {"source": "pool:delivery", "type": "sms.otp"}
    assert moved(before, during, "apitask_tasks_total", **source, outcome="started") == 1
    assert during[key("apitask_pool_running", pool="delivery")] == 1
    assert key("apitask_pool_running", pool="mail") not in during
    assert moved(before, during, "apitask_sms_send_operations_total", purpose="otp") == 1
    twilio.release.set()
    await twilio.wait_delivered(1)


def _hooked(hook: str, receiver: Receiver) -> dict[str, Any]:
    """Settings: request mode (the response waits for the call), metrics and ``hook`` on."""
    return {
        "external_phone_enabled": True,
        "mailer_delivery": "request",
        "metrics_enabled": True,
        f"hook_{hook}_enabled": True,
        f"hook_{hook}_uri": receiver.url,
        f"hook_{hook}_secrets": f"v1,{SECRET}",
    }


async def test_send_email_hook_calls_move_the_hook_counters_not_the_mail_ones(
    make_service: Callable[..., Any],
) -> None:
    """The send-email hook replaces the mailer: its calls are counted as hook sends
    (one accepted, one refused for good), and GoTrue's mail operations stay put."""
    answers = [Answer(204), Answer(400, b"no")]
    async with Receiver(script=lambda n, request: answers[n]) as receiver:
        svc: Service = await make_service(**_hooked("send_email", receiver))
        before = await scrape(svc)
        assert [await _signup(svc, email()) for _ in range(2)] == [200, 200]
        after = await scrape(svc)
    hook = {"hook": "send-email"}
    assert moved(before, after, "apitask_hook_send_operations_total", **hook) == 2
    assert moved(before, after, "apitask_hook_sent_total", **hook) == 1
    assert moved(before, after, "apitask_hook_send_errors_total", **hook) == 1
    confirmation = {"type": "confirmation"}
    assert moved(before, after, "global_auth_email_send_operations_total", **confirmation) == 0


async def test_send_sms_hook_calls_are_counted_as_hook_sends(
    make_service: Callable[..., Any],
) -> None:
    async with Receiver() as receiver:
        svc: Service = await make_service(**_hooked("send_sms", receiver))
        before = await scrape(svc)
        assert await _otp(svc, _phone()) == 200
        after = await scrape(svc)
    hook = {"hook": "send-sms"}
    assert moved(before, after, "apitask_hook_send_operations_total", **hook) == 1
    assert moved(before, after, "apitask_hook_sent_total", **hook) == 1
    assert moved(before, after, "apitask_sms_send_operations_total", purpose="otp") == 0

"""ApitaskCollector: what a Prometheus scrape shows of scopes, pools and an outbox."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import apitask
from apitask import Outcome, TaskCounters, WorkerPool
from apitask.mail import SMTPCounters
from apitask.outbox import Outbox, TaskRegistry, open_outbox
from apitask.outbox.sqlite import SQLiteStore
from apitask.prometheus import ApitaskCollector

if TYPE_CHECKING:
    from pathlib import Path


def scrape(collector: ApitaskCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Register ``collector`` in a fresh registry and parse what a scrape returns."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


async def test_scope_tasks_are_exported_by_type_and_outcome() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    before = scrape(ApitaskCollector())
    failed = key("apitask_tasks_total", source="scope", type="test.prom.fail", outcome="failed")
    async with apitask.scope():
        await apitask.run(apitask.task("test.prom.fail", fails))
    after = scrape(ApitaskCollector())
    assert after[failed] == before.get(failed, 0) + 1


async def test_pool_gauges_follow_the_pool_through_its_life() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def blocks() -> None:
        started.set()
        await release.wait()

    collector = ApitaskCollector()
    pool = WorkerPool(workers=1, queue_size=4)
    collector.add_pool("mail", pool)
    assert scrape(collector)[key("apitask_pool_state", pool="mail", state="created")] == 1
    async with pool:
        await pool.submit(apitask.task("test.prom.block", blocks))
        await started.wait()
        await pool.submit(apitask.task("test.prom.queued", asyncio.sleep, 0))
        during = scrape(collector)
        assert during[key("apitask_pool_queue_depth", pool="mail")] == 1
        assert during[key("apitask_pool_running", pool="mail")] == 1
        assert during[key("apitask_pool_retrying", pool="mail")] == 0
        assert during[key("apitask_pool_oldest_queued_age_seconds", pool="mail")] >= 0
        assert during[key("apitask_pool_state", pool="mail", state="running")] == 1
        assert key("apitask_pool_drain_leftovers", pool="mail", fate="spilled") not in during
        release.set()
    after = scrape(collector)
    assert after[key("apitask_pool_state", pool="mail", state="closed")] == 1
    assert after[key("apitask_pool_state", pool="mail", state="running")] == 0
    assert after[key("apitask_pool_drain_leftovers", pool="mail", fate="spilled")] == 0
    assert after[key("apitask_pool_drain_leftovers", pool="mail", fate="abandoned")] == 0
    succeeded = key(
        "apitask_tasks_total", source="pool:mail", type="test.prom.queued", outcome="succeeded"
    )
    assert after[succeeded] == 1


class Stored:
    """A durable no-op task."""

    type = "test.prom.stored"

    def payload(self) -> dict[str, str]:
        return {}

    async def run(self) -> None:
        return None


async def test_outbox_job_counts_come_from_refresh_not_from_the_scrape(tmp_path: Path) -> None:
    registry = TaskRegistry()
    registry.register(Stored.type, lambda type, payload: Stored())
    collector = ApitaskCollector()
    async with open_outbox(f"sqlite:///{tmp_path / 'jobs.db'}", registry) as outbox:
        assert isinstance(outbox, Outbox)
        assert isinstance(outbox.store, SQLiteStore)
        await outbox.migrate()
        collector.add_outbox(outbox)
        await outbox.sink.submit(Stored())
        assert not any(name.startswith("apitask_outbox") for name, _ in scrape(collector))
        await collector.refresh()
        await outbox.sink.submit(Stored())  # not seen until the next refresh
        seen = scrape(collector)
        assert seen[key("apitask_outbox_jobs", type=Stored.type, state="queued")] == 1
        assert seen[key("apitask_outbox_jobs", type=Stored.type, state="dead")] == 0
        assert seen[key("apitask_outbox_stats_age_seconds")] >= 0
        await collector.refresh()
        seen = scrape(collector)
        assert seen[key("apitask_outbox_jobs", type=Stored.type, state="queued")] == 2


async def test_refresh_without_an_outbox_does_nothing() -> None:
    collector = ApitaskCollector()
    await collector.refresh()
    assert not any(name.startswith("apitask_outbox") for name, _ in scrape(collector))


def test_other_counters_and_duplicate_names() -> None:
    collector = ApitaskCollector()
    counters = TaskCounters()
    counters.add("mailer.recovery", Outcome.SUCCEEDED, 3)
    collector.add_counters("outbox-worker", counters)
    sample = key(
        "apitask_tasks_total", source="outbox-worker", type="mailer.recovery", outcome="succeeded"
    )
    assert scrape(collector)[sample] == 3
    with pytest.raises(ValueError, match="'outbox-worker' are already exported"):
        collector.add_counters("outbox-worker", TaskCounters())
    collector.add_pool("p", WorkerPool(workers=1))
    with pytest.raises(ValueError, match="pool named 'p'"):
        collector.add_pool("p", WorkerPool(workers=1))
    # An app whose lifespan runs again exports its new pool under the same name.
    closed = WorkerPool(workers=1)
    closed.start_sync()
    closed.close_sync()
    collector.add_pool("q", closed)
    assert scrape(collector)[key("apitask_pool_state", pool="q", state="closed")] == 1
    collector.add_pool("q", WorkerPool(workers=1), replace=True)
    now = scrape(collector)
    assert now[key("apitask_pool_state", pool="q", state="created")] == 1
    assert now[key("apitask_pool_state", pool="q", state="closed")] == 0


async def test_one_outbox_only(tmp_path: Path) -> None:
    collector = ApitaskCollector()
    outbox = open_outbox(f"sqlite:///{tmp_path / 'one.db'}")
    collector.add_outbox(outbox)
    with pytest.raises(ValueError, match="already exported"):
        collector.add_outbox(outbox)


def test_smtp_counters_and_latency_histogram() -> None:
    collector = ApitaskCollector()
    counters = SMTPCounters(sent=2, transient=1)
    counters.send_latency.observe(0.003)
    counters.send_latency.observe(0.2)
    collector.add_smtp("relay", counters)
    samples = scrape(collector)
    assert samples[key("apitask_smtp_sends_total", client="relay", outcome="sent")] == 2
    assert samples[key("apitask_smtp_sends_total", client="relay", outcome="transient")] == 1
    bucket = "apitask_smtp_send_seconds_bucket"
    assert samples[key(bucket, client="relay", le="0.005")] == 1
    assert samples[key(bucket, client="relay", le="0.25")] == 2
    assert samples[key(bucket, client="relay", le="+Inf")] == 2
    assert samples[key("apitask_smtp_send_seconds_count", client="relay")] == 2
    assert samples[key("apitask_smtp_send_seconds_sum", client="relay")] == pytest.approx(0.203)
    with pytest.raises(ValueError, match="SMTP client named 'relay'"):
        collector.add_smtp("relay", SMTPCounters())

"""Prometheus metrics for apitask's parts (the ``prometheus`` extra).

One collector reads the counters and gauges apitask already keeps — no
instrumentation on the hot path, nothing is counted twice — and renders them
when Prometheus scrapes::

    from prometheus_client import REGISTRY
    from apitask.prometheus import ApitaskCollector

    metrics = ApitaskCollector()
    metrics.add_pool("mail", pool)
    metrics.add_outbox(outbox)          # job counts, refreshed by metrics.refresh()
    metrics.add_smtp("default", smtp.counters)  # sends and their latency
    REGISTRY.register(metrics)

Names start with ``apitask_``. Task types are low-cardinality by contract,
so ``type`` is a safe label.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ._pool_state import PoolState
from ._scope import scope_counters
from .outbox import JobState

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from ._counters import TaskCounters
    from ._pool import WorkerPool
    from .mail import SMTPCounters
    from .outbox import Outbox, Stats

__all__ = ["ApitaskCollector"]


class ApitaskCollector(Collector):
    """Exports task counters, pool gauges and outbox job counts.

    Request-scope counters (:data:`apitask.scope_counters`) are included from
    the start under ``source="scope"``; add pools, outboxes and any other
    :class:`~apitask.TaskCounters` (an outbox worker's, say) by name.
    """

    def __init__(self) -> None:
        self._counters: dict[str, TaskCounters] = {"scope": scope_counters}
        self._pools: dict[str, WorkerPool] = {}
        self._smtp: dict[str, SMTPCounters] = {}
        self._outbox: Outbox | None = None
        self._stats: Stats | None = None
        self._stats_at = 0.0

    def add_counters(self, source: str, counters: TaskCounters) -> None:
        """Export ``counters`` as ``apitask_tasks_total{source=...}``."""
        if source in self._counters:
            raise ValueError(f"task counters named {source!r} are already exported")
        self._counters[source] = counters

    def add_pool(self, name: str, pool: WorkerPool, *, replace: bool = False) -> None:
        """Export ``pool``'s counters (``source="pool:<name>"``) and gauges.

        ``replace=True`` exports ``pool`` in place of the one already under
        ``name`` (an app whose lifespan runs again builds a new pool: a
        closed pool cannot be started twice).
        """
        if name in self._pools and not replace:
            raise ValueError(f"a pool named {name!r} is already exported")
        self._pools[name] = pool

    def add_smtp(self, name: str, counters: SMTPCounters) -> None:
        """Export an :class:`~apitask.mail.SMTPClient`'s ``counters`` under ``client=name``.

        Gives ``apitask_smtp_sends_total{client, outcome}`` and the latency
        histogram ``apitask_smtp_send_seconds{client}`` of successful sends.
        """
        if name in self._smtp:
            raise ValueError(f"an SMTP client named {name!r} is already exported")
        self._smtp[name] = counters

    def add_outbox(self, outbox: Outbox) -> None:
        """Export ``outbox``'s job counts by type and state.

        Counting jobs is a database query, which a scrape (a synchronous
        call) must not make: :meth:`refresh` reads them, and the exported
        ``apitask_outbox_stats_age_seconds`` says how old they are.
        """
        if self._outbox is not None:
            raise ValueError("an outbox is already exported")
        self._outbox = outbox

    async def refresh(self) -> None:
        """Read the outbox's job counts now (call it periodically, or before a scrape)."""
        if self._outbox is not None:
            self._stats = await self._outbox.stats()
            self._stats_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        """Render every metric (called by ``prometheus_client`` on a scrape)."""
        yield self._tasks()
        if self._pools:
            yield from self._pool_gauges()
        if self._stats is not None:
            yield from self._outbox_gauges(self._stats)
        if self._smtp:
            yield from self._smtp_metrics()

    def _tasks(self) -> Metric:
        family = CounterMetricFamily(
            "apitask_tasks",
            "Tasks by where they ran, type and outcome.",
            labels=["source", "type", "outcome"],
        )
        # A pool's counters are a snapshot taken when read: read them now.
        sources = [*self._counters.items()]
        sources += [(f"pool:{name}", pool.counters) for name, pool in self._pools.items()]
        for source, counters in sources:
            for type, outcomes in counters.snapshot().items():
                for outcome, count in outcomes.items():
                    family.add_metric([source, type, outcome], count)
        return family

    def _pool_gauges(self) -> Iterator[Metric]:
        # (metric suffix, help, WorkerPool attribute)
        gauges = (
            ("queue_depth", "Tasks waiting in the queue.", "queue_depth"),
            ("oldest_queued_age_seconds", "Age of the oldest queued task.", "oldest_queued_age"),
            ("running", "Tasks running now.", "running"),
            ("retrying", "Tasks waiting for a retry.", "retrying"),
        )
        for suffix, doc, attribute in gauges:
            family = GaugeMetricFamily(f"apitask_pool_{suffix}", doc, labels=["pool"])
            for name, pool in self._pools.items():
                family.add_metric([name], float(getattr(pool, attribute)))
            yield family
        state = GaugeMetricFamily(
            "apitask_pool_state", "1 for the pool's lifecycle state.", labels=["pool", "state"]
        )
        leftovers = GaugeMetricFamily(
            "apitask_pool_drain_leftovers",
            "Tasks the last drain did not finish, by what became of them.",
            labels=["pool", "fate"],
        )
        for name, pool in self._pools.items():
            for member in PoolState:
                state.add_metric([name, member.value], float(pool.state is member))
            report = pool.report
            if report is not None:
                leftovers.add_metric([name, "spilled"], len(report.spilled))
                leftovers.add_metric([name, "abandoned"], len(report.abandoned))
        yield state
        yield leftovers

    def _outbox_gauges(self, stats: Stats) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "apitask_outbox_jobs", "Outbox jobs by type and state.", labels=["type", "state"]
        )
        for type, by_state in stats.counts.items():
            for job_state in JobState:
                jobs.add_metric([type, job_state.value], by_state.get(job_state, 0))
        yield jobs
        yield GaugeMetricFamily(
            "apitask_outbox_stats_age_seconds",
            "Seconds since the outbox job counts were read.",
            value=time.monotonic() - self._stats_at,
        )

    def _smtp_metrics(self) -> Iterator[Metric]:
        sends = CounterMetricFamily(
            "apitask_smtp_sends",
            "SMTP sends by outcome (sent, transient, permanent, invalid, retries).",
            labels=["client", "outcome"],
        )
        latency = HistogramMetricFamily(
            "apitask_smtp_send_seconds",
            "Wall time of successful SMTP sends, pool wait included.",
            labels=["client"],
        )
        for name, counters in self._smtp.items():
            for outcome in ("sent", "transient", "permanent", "invalid", "retries"):
                sends.add_metric([name, outcome], getattr(counters, outcome))
            histogram = counters.send_latency
            latency.add_metric([name], histogram.cumulative(), histogram.sum)
        yield sends
        yield latency

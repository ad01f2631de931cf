"""``GET /metrics``: the service's Prometheus metrics, behind ``GOTRUE_METRICS_ENABLED``.

What is exported (docs/metrics.md lists every metric):

* apitask's own, through :class:`apitask.prometheus.ApitaskCollector`: tasks
  by source, type and outcome; the pool's gauges (pool mode); the outbox's job
  counts, read every :data:`REFRESH_SECONDS` by a task of the lifespan; the
  in-process outbox worker's counters; the SMTP client's sends and latency.
* GoTrue's mail metrics (§4.8) under GoTrue's names, and the mails delivered
  by type, which GoTrue does not count; texts and send-hook calls counted
  the same way under our names (:mod:`.send_metrics`).
* The one worker pool every kind of message shares, as ``pool="delivery"``.
* The database cleanup's rows removed by table (GoTrue's
  ``gotrue_cleanup_affected_rows``) and its pool, as ``pool="db_cleanup"``.

Each app has a registry of its own (tests build many apps in one process);
the mail counters are the process's (:data:`apitask.mail.mail_counters`).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import TYPE_CHECKING

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from apitask.mail import SMTPClient, mail_counters
from apitask.prometheus import ApitaskCollector
from apitask_auth.delivery.send_hooks import SmsHookTexter
from apitask_auth.delivery.sms import SmsChain
from apitask_auth.http.db_cleanup import CleanupMetrics
from apitask_auth.routes.send_metrics import SendCounters, SendMetrics, send_families

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from prometheus_client.metrics_core import Metric

    from apitask import TaskCounters
    from apitask_auth.delivery.mail_chain import MailChain
    from apitask_auth.delivery.texter import Texter
    from apitask_auth.http.db_cleanup import DatabaseCleanup

__all__ = [
    "CLEANUP_POOL_NAME",
    "POOL_NAME",
    "REFRESH_SECONDS",
    "MailMetrics",
    "ServiceMetrics",
    "scrape",
]

logger = logging.getLogger("apitask_auth")

REFRESH_SECONDS = 15.0
"""How often the outbox's job counts are read for /metrics."""

POOL_NAME = "delivery"
"""The ``pool`` label of the service's one worker pool, shared by mail, texts and
hook calls (``source="pool:delivery"`` in ``apitask_tasks_total``)."""


CLEANUP_POOL_NAME = "db_cleanup"
"""The ``pool`` label of the database cleanup's own one-worker pool."""


class MailMetrics(Collector):
    """GoTrue's mail metrics, plus the mails delivered by type."""

    def __init__(self, operations: TaskCounters, mails: TaskCounters = mail_counters) -> None:
        self.operations = operations
        self.mails = mails
        # Counted by the e-mail limiter itself (http/ratelimit.py), through app.state.
        self.rate_limited: Counter[str] = Counter()

    def collect(self) -> Iterator[Metric]:
        """Render the mail metrics (called on a scrape)."""
        yield from send_families(
            SendCounters(
                "global_auth_email_send_operations",
                "global_auth_email_send_errors",
                "apitask_mail_sent",
                "type",
                "Mails (GoTrue's names for the first two counters)",
                (self.operations,),
                self.mails,
            )
        )
        limited = CounterMetricFamily(
            "gotrue_email_rate_limit_counter",
            "Sends refused by GOTRUE_RATE_LIMIT_EMAIL_SENT, by request path (GoTrue's name).",
            labels=["path"],
        )
        for path, count in self.rate_limited.items():
            limited.add_metric([path], count)
        yield limited


async def scrape(request: Request) -> Response:
    """``GET /metrics``: the app's registry in Prometheus's text format."""
    metrics: ServiceMetrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


class ServiceMetrics:
    """The service's registry and its refresh task.

    Args:
        chain: the mail chain (its runtime holds the pool and the outbox every
            kind of message shares).
        texter: the service's texter: the SMS chain's and the send-SMS hook's
            operations are counted (none for a refusing or a test's texter).
        cleanup: the database cleanup (``GOTRUE_DB_CLEANUP_ENABLED``): its rows
            removed by table, and its pool as ``pool="db_cleanup"``.
    """

    def __init__(
        self,
        chain: MailChain,
        texter: Texter | None = None,
        cleanup: DatabaseCleanup | None = None,
    ) -> None:
        self.chain = chain
        self.mail = MailMetrics(chain.operations)
        hooks = [chain.email_hook] if chain.email_hook is not None else []
        if isinstance(texter, SmsHookTexter):
            hooks.append(texter.hook)
        self.sends = SendMetrics(
            [texter.operations] if isinstance(texter, SmsChain) else [],
            [hook.operations for hook in hooks],
        )
        self.tasks = ApitaskCollector()
        runtime = chain.runtime
        if runtime.pool is not None:
            self.tasks.add_pool(POOL_NAME, runtime.pool)
        if runtime.outbox is not None:
            self.tasks.add_outbox(runtime.outbox)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.tasks)
        self.registry.register(self.mail)
        self.registry.register(self.sends)
        self.cleanup = cleanup
        if cleanup is not None:
            self.tasks.add_pool(CLEANUP_POOL_NAME, cleanup.pool)
            self.registry.register(CleanupMetrics(cleanup))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """While the chain runs: export its transport and worker, refresh the outbox counts."""
        if self.cleanup is not None:  # its pool of this run (DatabaseCleanup.start)
            self.tasks.add_pool(CLEANUP_POOL_NAME, self.cleanup.pool, replace=True)
        transport = self.chain.transport
        if isinstance(transport, SMTPClient):
            self.tasks.add_smtp("default", transport.counters)
        worker = self.chain.runtime.worker
        if worker is not None:
            self.tasks.add_counters("outbox-worker", worker.counters)
        refresher = None
        if self.chain.runtime.outbox is not None:
            await self.tasks.refresh()
            refresher = asyncio.get_running_loop().create_task(self._refresh())
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.tasks.refresh()
            except Exception as exc:  # a database hiccup: keep the old counts, say so
                logger.warning("metrics: could not read the outbox job counts: %s", exc)

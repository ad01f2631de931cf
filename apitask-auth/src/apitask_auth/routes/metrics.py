"""``GET /metrics``: the service's Prometheus metrics, behind ``GOTRUE_METRICS_ENABLED``.

What is exported (docs/metrics.md lists every metric):

* apitask's own, through :class:`apitask.prometheus.ApitaskCollector`: tasks
  by source, type and outcome; the pool's gauges (pool mode); the outbox's job
  counts, read every :data:`REFRESH_SECONDS` by a task of the lifespan; the
  in-process outbox worker's counters; the SMTP client's sends and latency.
* GoTrue's mail metrics (§4.8) under GoTrue's names, and the mails delivered
  by type, which GoTrue does not count.

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

from apitask import Outcome, TaskCounters
from apitask.mail import SMTPClient, mail_counters
from apitask.prometheus import ApitaskCollector
from apitask_auth.errors import APIError, ErrorCode, answer_api_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from fastapi import FastAPI
    from prometheus_client.metrics_core import Metric

    from apitask_auth.delivery.mail_chain import MailChain

__all__ = ["REFRESH_SECONDS", "MailMetrics", "ServiceMetrics"]

logger = logging.getLogger("apitask_auth")

REFRESH_SECONDS = 15.0
"""How often the outbox's job counts are read for /metrics."""


class MailMetrics(Collector):
    """GoTrue's mail metrics, plus the mails delivered by type."""

    def __init__(self, operations: TaskCounters, mails: TaskCounters = mail_counters) -> None:
        self.operations = operations
        self.mails = mails
        self.rate_limited: Counter[str] = Counter()

    def collect(self) -> Iterator[Metric]:
        """Render the mail metrics (called on a scrape)."""
        operations = CounterMetricFamily(
            "global_auth_email_send_operations",
            "Mails handed to the mailer, after the rate limits (GoTrue's name).",
            labels=["type"],
        )
        for type, outcomes in self.operations.snapshot().items():
            operations.add_metric([type], outcomes.get(Outcome.SUBMITTED, 0))
        errors = CounterMetricFamily(
            "global_auth_email_send_errors",
            "Send attempts that failed, in the request or the background, and "
            "refused addresses (GoTrue's name).",
            labels=["type"],
        )
        sent = CounterMetricFamily(
            "apitask_mail_sent",
            "Mails delivered (or dropped by the no-op client).",
            labels=["type"],
        )
        for type, outcomes in self.mails.snapshot().items():
            errors.add_metric([type], outcomes.get(Outcome.FAILED, 0))
            sent.add_metric([type], outcomes.get(Outcome.SUCCEEDED, 0))
        limited = CounterMetricFamily(
            "gotrue_email_rate_limit_counter",
            "Sends refused by GOTRUE_RATE_LIMIT_EMAIL_SENT, by request path (GoTrue's name).",
            labels=["path"],
        )
        for path, count in self.rate_limited.items():
            limited.add_metric([path], count)
        yield from (operations, errors, sent, limited)


class ServiceMetrics:
    """The service's registry, its ``/metrics`` route and its refresh task."""

    def __init__(self, chain: MailChain) -> None:
        self.chain = chain
        self.mail = MailMetrics(chain.operations)
        self.tasks = ApitaskCollector()
        if chain.pool is not None:
            self.tasks.add_pool("mail", chain.pool)
        if chain.outbox is not None:
            self.tasks.add_outbox(chain.outbox)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.tasks)
        self.registry.register(self.mail)

    def install(self, app: FastAPI) -> None:
        """Serve ``GET /metrics`` and count the e-mail limiter's refusals."""

        async def metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        async def api_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, APIError)
            if exc.code == ErrorCode.OVER_EMAIL_SEND_RATE_LIMIT:
                self.mail.rate_limited[request.url.path] += 1
            return await answer_api_error(request, exc)

        app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
        # Replaces the handler apitask_auth.errors installed, and ends in it.
        app.add_exception_handler(APIError, api_error)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """While the chain runs: export its transport and worker, refresh the outbox counts."""
        transport = self.chain.transport
        if isinstance(transport, SMTPClient):
            self.tasks.add_smtp("default", transport.counters)
        worker = self.chain.worker
        if worker is not None:
            self.tasks.add_counters("outbox-worker", worker.counters)
        refresher = None
        if self.chain.outbox is not None:
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

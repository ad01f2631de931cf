"""Pool gauges, the drain outcome and the SMTP latency histogram on the dashboard."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from apitask import WorkerPool, dashboard
from apitask._histogram import Histogram

if TYPE_CHECKING:
    from apitask.outbox import Outbox


class Gate:
    """A pool task that holds its worker until released."""

    type = "gate"

    def __init__(self, started: asyncio.Event, release: asyncio.Event) -> None:
        self.started = started
        self.release = release

    async def run(self) -> None:
        self.started.set()
        await self.release.wait()


async def test_pool_gauges_and_drain(outbox: Outbox) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    pool = WorkerPool(workers=1)
    latency = Histogram()
    for seconds in (0.003, 0.004, 0.2):
        latency.observe(seconds)
    app = dashboard.app(outbox, pool, allow_anonymous=True, smtp_latency=lambda: latency)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as client:
        await pool.start()
        await pool.submit(Gate(started, release))
        await pool.submit(Gate(asyncio.Event(), release))
        await started.wait()
        gauges = (await client.get("/api/summary")).json()["pool"]
        assert (gauges["queued"], gauges["running"], gauges["drain"]) == (1, 1, None)
        page = await client.get("/")
        assert 'data-pool="running">1<' in page.text
        assert "not drained" in page.text
        assert "<td>0.005</td><td>2</td>" in page.text
        assert "<td>0.25</td><td>1</td>" in page.text
        release.set()
        report = await pool.aclose()
        assert report.complete
        drained = (await client.get("/api/summary")).json()["pool"]["drain"]
        page = await client.get("/")
    assert drained == {"complete": True, "timed_out": False, "leftovers": 0, "spilled": 0}
    assert "drain: complete" in page.text


async def test_no_histogram_yet(outbox: Outbox) -> None:
    """A latency function that has no histogram yet (no SMTP client) shows no section."""
    app = dashboard.app(outbox, allow_anonymous=True, smtp_latency=lambda: None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as client:
        page = await client.get("/")
    assert page.status_code == 200
    assert "SMTP send latency" not in page.text

"""An operator's path through apitask's dashboard, in headless Chromium against a real uvicorn.

Refused without a session; then the overview, a filter for dead mail to one
domain, a dead mail's page (recipient and headers, never the code), a retry
of a dead job that then succeeds, and a purge. Run with
APITASK_SCREENSHOTS=docs/img to refresh the screenshots in docs/dashboard.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from ._chromium import Page, launch, require_chromium
from ._uvicorn import running_server, uvicorn_command

HERE = Path(__file__).parent
BASE = "/ops/apitask"


@pytest.fixture
def chromium() -> Path:
    return require_chromium()


async def set_field(page: Page, selector: str, value: str | bool) -> None:
    prop = "checked" if isinstance(value, bool) else "value"
    await page.evaluate(
        f"document.querySelector({json.dumps(selector)}).{prop} = {json.dumps(value)}"
    )


async def test_browser_filter_retry_and_purge(chromium: Path, tmp_path: Path) -> None:
    app = uvicorn_command("_dashboard_app:create_app", "--factory", "--app-dir", str(HERE))
    env = {**os.environ, "APITASK_DASHBOARD_DB": str(tmp_path / "outbox.db")}
    async with (
        running_server(app, env=env) as base_url,
        httpx.AsyncClient(base_url=base_url, verify=False) as http,
    ):
        flaky, mail, *_pending = (await http.post("/_test/seed")).json()
        async with launch(chromium, tmp_path / "profile") as browser:
            page = await browser.new_page()
            await page.goto(f"{base_url}{BASE}/")
            assert "You are not allowed to see this page." in await page.text()
            await page.evaluate("document.cookie = 'operator=ann; path=/'")

            # The overview: counts by state, the dead letters' reasons; the script polls.
            await page.goto(f"{base_url}{BASE}/")
            assert await page.text('[data-total="dead"]') == "2"
            assert await page.text('[data-total="queued"]') == "3"
            assert "signed in as ann" in await page.text("header")
            assert await page.evaluate(
                """new Promise(resolve => {
                    const tick = setInterval(() => {
                        if (document.body.dataset.refreshed) { clearInterval(tick); resolve(true); }
                    }, 20);
                })"""
            )
            # The script drew the chart from the page's read and its own.
            assert await page.evaluate("document.querySelectorAll('svg.chart polyline').length")
            await page.screenshot(tmp_path / "dashboard-overview.png")

            # Filter: dead mail to one domain.
            await set_field(page, 'select[name="state"]', "dead")
            await set_field(page, 'input[name="domain"]', "acme.example")
            await page.click("form.filter button")
            assert "state=dead" in await page.url()
            rows = await page.evaluate(
                "[...document.querySelectorAll('#job-list tbody tr')].map(r => r.innerText)"
            )
            assert len(rows) == 1
            assert "550 5.1.1 mailbox unavailable" in rows[0]
            await page.screenshot(tmp_path / "dashboard-dead-letters.png")

            # The dead mail: recipient and headers, not the body's code.
            await page.click(f'a[href="{BASE}/jobs/{mail}"]')
            body = await page.text()
            assert "ann@acme.example" in body
            assert "X-Mail-Type" in body
            assert "771234" not in body
            await page.screenshot(tmp_path / "dashboard-job.png")

            # Retry the dead report once it is fixed: it runs and succeeds.
            await page.goto(f"{base_url}{BASE}/jobs/{flaky}")
            assert "the storage bucket is read-only" in await page.text()
            await http.post("/_test/fix")
            await set_field(page, 'form[action$="/retry"] input[name="confirm"]', True)
            await page.click('form[action$="/retry"] button')
            assert "1 job retried" in await page.text(".notice")
            assert (await http.post("/_test/work")).json() == 1
            await page.goto(f"{base_url}{BASE}/jobs/{flaky}")
            assert "succeeded" in await page.text("h2")
            assert "Erased when the job succeeded." in await page.text()

            # Purge the succeeded job.
            await page.goto(f"{base_url}{BASE}/")
            await set_field(page, 'form[action$="/purge"] select[name="state"]', "succeeded")
            await set_field(page, 'form[action$="/purge"] input[name="confirm"]', True)
            await page.click('form[action$="/purge"] button')
            assert "1 succeeded job(s) purged" in await page.text(".notice")
            await page.goto(f"{base_url}{BASE}/jobs/{flaky}")
            assert "No such job." in await page.text()

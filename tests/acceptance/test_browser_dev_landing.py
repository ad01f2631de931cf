"""Dev mode for a person (issue #14): the mailed link lands on a page that says who is
signed in, not on the API's JSON 404; following it twice shows GoTrue's error.

The real ``apitask-auth serve --dev`` with its default site URL (the API itself),
driven through headless Chromium from the dev inbox, as a person would.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from ._chromium import launch, require_chromium
from ._service import SERVE_DEV, dev_environment
from ._uvicorn import free_port, running_server

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def chromium() -> Path:
    return require_chromium()


async def test_the_confirm_link_lands_on_a_page_naming_the_signed_in_address(
    chromium: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = dev_environment(port)
    # Dev mode's own defaults: the site URL is the API (http://localhost:PORT).
    for name in ("GOTRUE_SITE_URL", "GOTRUE_URI_ALLOW_LIST", "API_EXTERNAL_URL"):
        env.pop(name)
    email = f"person-{uuid.uuid4().hex[:8]}@example.com"
    async with (
        running_server(SERVE_DEV, env=env, cwd=tmp_path) as base_url,
        httpx.AsyncClient(base_url=base_url, verify=False) as http,
        launch(chromium, tmp_path / "profile") as browser,
    ):
        signup = await http.post("/signup", json={"email": email, "password": "correct horse 42"})
        assert signup.status_code == 200, signup.text
        caught = (await http.get("/_dev/inbox/messages", params={"to": email, "wait": 20})).json()
        page = await browser.new_page()
        await page.goto(f"{base_url}/_dev/inbox?id={caught[0]['id']}")
        link = await page.evaluate("""document.querySelector('#links a[href*="/verify"]').href""")
        await page.click('#links a[href*="/verify"]')

        assert await page.text("#who") == f"Signed in as {email}"
        assert await page.text("#kind") == "(signup link)"
        # The tokens were read and taken out of the address bar.
        assert await page.url() == f"http://localhost:{port}/"
        await page.screenshot(tmp_path / "dev-landing.png")

        # Back to the inbox by the page's own link.
        await page.click('a[href="/_dev/inbox"]')
        assert (await page.url()).endswith("/_dev/inbox")

        # The same link again: GoTrue's error, shown, not a JSON 404.
        await page.goto(link)
        assert await page.text("#who") == "Not signed in."
        assert await page.text("#problem") == "Email link is invalid or has expired"

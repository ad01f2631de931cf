"""Issue #6's browser test: sign-up -> dev inbox -> confirmation link -> redirected with a session.

Runs the real ``apitask-auth serve --dev`` (SQLite file in a temp dir, no
GOTRUE_SMTP_HOST, so mail goes to the embedded catcher over SMTP) and drives
headless Chromium through it as a person would.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

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


@pytest.mark.parametrize("mode", ["inline", "outbox"])
async def test_sign_up_confirm_from_the_inbox_and_land_with_a_session(
    chromium: Path, tmp_path: Path, mode: str
) -> None:
    """The confirmation link in the caught mail verifies the user and hands over a session
    (mail sent in the request, and sent by the outbox worker after it)."""
    port = free_port()
    env = dev_environment(port) | {"GOTRUE_MAILER_DELIVERY": mode}
    # Plain http on loopback: verify=False skips loading the CA bundle, which
    # would block the event loop for ~0.3 s.
    async with (
        running_server(SERVE_DEV, env=env, cwd=tmp_path) as base_url,
        httpx.AsyncClient(base_url=base_url, verify=False) as http,
    ):
        email = f"person-{uuid.uuid4().hex[:8]}@example.com"

        async with launch(chromium, tmp_path / "profile") as browser:
            page = await browser.new_page()
            await page.goto(f"{base_url}/health")
            status = await page.evaluate(
                f"""fetch("/signup", {{
                    method: "POST",
                    headers: {{"Content-Type": "application/json"}},
                    body: JSON.stringify({{email: "{email}", password: "correct horse 42"}}),
                }}).then(response => response.status)"""
            )
            assert status == 200

            # The mail may be sent after the response (pool/outbox modes): long-poll for it.
            caught = (
                await http.get("/_dev/inbox/messages", params={"to": email, "wait": 20})
            ).json()
            assert len(caught) == 1
            await page.goto(f"{base_url}/_dev/inbox")
            await page.click(f'nav a[data-id="{caught[0]["id"]}"]')
            await page.screenshot(tmp_path / "signup-mail.png")

            await page.click('#links a[href*="/verify"]')
            landed = urlsplit(await page.url())

        assert f"{landed.scheme}://{landed.netloc}{landed.path}" == f"{base_url}/health"
        session = {key: values[0] for key, values in parse_qs(landed.fragment).items()}
        assert session["type"] == "signup"
        assert session["token_type"] == "bearer"
        assert session["refresh_token"]
        user = await http.get(
            "/user", headers={"Authorization": f"Bearer {session['access_token']}"}
        )
        assert user.status_code == 200
        assert user.json()["email"] == email
        assert user.json()["email_confirmed_at"]

"""Issue #6's browser test: sign-up -> dev inbox -> confirmation link -> redirected with a session.

Runs the real ``apitask-auth serve --dev`` (SQLite file in a temp dir, no
GOTRUE_SMTP_HOST, so mail goes to the embedded catcher) and drives headless
Chromium through it as a person would. Skips with "needs apitask-auth /signup"
while the service does not serve /signup and /verify yet.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from _chromium import launch, require_chromium
from _uvicorn import free_port, running_server

JWT_SECRET = "browser-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
def chromium() -> Path:
    return require_chromium()


def _service_command() -> list[str]:
    found = shutil.which("apitask-auth", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "apitask_auth.cli"]


# Resolved at import: looking up the console script stats files, not for the event loop.
SERVICE = _service_command()


def dev_environment(port: int) -> dict[str, str]:
    """This process's environment without GoTrue settings, plus the test's own."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GOTRUE_") and key not in {"API_EXTERNAL_URL", "DATABASE_URL"}
    }
    origin = f"http://127.0.0.1:{port}"
    return {
        **base,
        "PORT": str(port),
        "API_EXTERNAL_URL": origin,
        # Where /verify redirects: a page of the service itself, so the browser
        # lands on something real without a second server.
        "GOTRUE_SITE_URL": f"{origin}/health",
        "GOTRUE_URI_ALLOW_LIST": f"{origin}/**",
        "GOTRUE_JWT_SECRET": JWT_SECRET,
        "GOTRUE_MAILER_AUTOCONFIRM": "false",
    }


async def test_sign_up_confirm_from_the_inbox_and_land_with_a_session(
    chromium: Path, tmp_path: Path
) -> None:
    """The confirmation link in the caught mail verifies the user and hands over a session."""
    port = free_port()
    command = [*SERVICE, "serve", "--dev"]
    async with (
        running_server(command, env=dev_environment(port), cwd=tmp_path) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        paths = (await http.get("/openapi.json")).json().get("paths", {})
        if not {"/signup", "/verify"} <= paths.keys():
            pytest.skip("needs apitask-auth /signup")
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

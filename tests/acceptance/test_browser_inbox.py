"""A person's path through the dev inbox, in headless Chromium against a real uvicorn.

Open /_dev/inbox, open the newest mail, click the link in it, land where the
link leads (a 303 redirect to a page with a token fragment, as /verify does).
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from ._chromium import launch, require_chromium
from ._uvicorn import running_server, uvicorn_command

HERE = Path(__file__).parent


def confirmation_mail(base_url: str, to: str, token: str) -> EmailMessage:
    link = f"{base_url}/landing?token={token}"
    message = EmailMessage()
    message["From"] = "Apitask <noreply@example.com>"
    message["To"] = to
    message["Subject"] = "Confirm your sign-up <b>now</b> ✓"
    message.set_content(f"Hello!\n\nFollow this link to confirm your account:\n{link}\n")
    message.add_alternative(
        f"""<div style="font-family:sans-serif;max-width:520px">
<h2 style="color:#0969da">Confirm your sign-up</h2>
<p>Hello! Follow this link to confirm your account:</p>
<p><a href="{link}" style="background:#0969da;color:#fff;padding:8px 14px;border-radius:6px;
text-decoration:none">Confirm my e-mail</a></p>
<p style="color:#666">If you did not sign up, ignore this mail.</p></div>
<script>top.document.title = "pwned"; document.body.append("script ran")</script>""",
        subtype="html",
    )
    return message


@pytest.fixture
def chromium() -> Path:
    return require_chromium()


async def test_browser_opens_a_message_and_follows_its_link(chromium: Path, tmp_path: Path) -> None:
    """List -> message (HTML, text, links) -> click -> the redirect target with the token."""
    app = uvicorn_command("_inbox_app:create_app", "--factory", "--app-dir", str(HERE))
    # Plain http on loopback: verify=False skips loading the CA bundle, which
    # would block the event loop for ~0.3 s.
    async with (
        running_server(app) as base_url,
        httpx.AsyncClient(base_url=base_url, verify=False) as http,
    ):
        smtp = (await http.get("/_test/smtp")).json()
        for n, to in enumerate(("ann@example.com", "zoe@example.com")):
            mail = confirmation_mail(base_url, to, token=f"token-{n}")
            await aiosmtplib.send(mail, hostname=smtp["host"], port=smtp["port"])

        async with launch(chromium, tmp_path / "profile") as browser:
            page = await browser.new_page()
            await page.goto(f"{base_url}/_dev/inbox")
            await page.screenshot(tmp_path / "inbox-list.png")
            rows = await page.evaluate(
                "[...document.querySelectorAll('nav a .to')].map(e => e.innerText)"
            )
            assert rows == ["zoe@example.com", "ann@example.com"]
            # The hostile-looking subject is shown as text, not markup.
            assert "Confirm your sign-up <b>now</b> ✓" in await page.text("nav")

            await page.click("nav a")
            assert "id=" in await page.url()
            assert await page.text("#subject") == "Confirm your sign-up <b>now</b> ✓"
            assert await page.evaluate("document.querySelector('iframe').sandbox.value") == (
                "allow-popups allow-popups-to-escape-sandbox"
            )
            # The mail's <script> did not run: the sandbox has no allow-scripts.
            assert (await page.evaluate("document.title")).startswith("Dev inbox")
            await page.screenshot(tmp_path / "inbox-message.png")

            await page.click("#links a")
            assert await page.url() == f"{base_url}/welcome#access_token=token-1&type=signup"
            assert await page.text("h1") == "Welcome aboard"

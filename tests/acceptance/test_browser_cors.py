"""A browser app on another origin calls the API, as supabase-js does (issue #14).

The page is served from one localhost port, ``apitask-auth serve --dev`` from
another: to Chromium two origins, so every call with supabase-js's headers
needs the CORS preflight to pass. It used to answer 405: fetch() failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from ._chromium import launch, require_chromium
from ._service import JWT_SECRET, SERVE_DEV, dev_environment
from ._uvicorn import free_port, running_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

PAGE = "<!doctype html><title>app</title><p>a browser app on its own origin</p>"


@pytest.fixture
def chromium() -> Path:
    return require_chromium()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the server's access lines are noise in the test log


@contextlib.asynccontextmanager
async def app_origin(root: Path) -> AsyncIterator[str]:
    """Serve ``root`` (the app's page) on a port of its own, in a thread."""
    await asyncio.to_thread((root / "index.html").write_text, PAGE)
    handler = functools.partial(_Quiet, directory=str(root))
    server = await asyncio.to_thread(ThreadingHTTPServer, ("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        await asyncio.to_thread(server.shutdown)
        await asyncio.to_thread(server.server_close)


def _fetch(url: str, method: str, headers: dict[str, str], body: object = None) -> str:
    """JS: fetch() as supabase-js does; the status, the JSON body and two exposed headers,
    or the error a refused preflight gives (a TypeError)."""
    init: dict[str, Any] = {"method": method, "headers": headers}
    if body is not None:
        init["body"] = json.dumps(body)
    return f"""fetch({json.dumps(url)}, {json.dumps(init)}).then(
        async response => ({{
            status: response.status,
            body: await response.json(),
            total: response.headers.get("x-total-count"),
        }}),
        error => ({{error: error.name}}),
    )"""


async def test_an_app_on_another_origin_signs_up_and_reads_the_user(
    chromium: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = dev_environment(port) | {
        "GOTRUE_MAILER_AUTOCONFIRM": "true",
        "GOTRUE_CORS_ALLOWED_HEADERS": "x-tenant",
    }
    anon = jwt.encode({"role": "anon"}, JWT_SECRET, algorithm="HS256")
    service_role = jwt.encode({"role": "service_role"}, JWT_SECRET, algorithm="HS256")
    headers = {
        "apikey": anon,
        "Authorization": f"Bearer {anon}",
        "Content-Type": "application/json;charset=UTF-8",
        "X-Client-Info": "supabase-js-web/2.49.0",
        "X-Supabase-Api-Version": "2024-01-01",
    }
    email = f"cors-{uuid.uuid4().hex[:8]}@example.com"
    await asyncio.to_thread((tmp_path / "site").mkdir)
    async with (
        running_server(SERVE_DEV, env=env, cwd=tmp_path) as api,
        app_origin(tmp_path / "site") as origin,
        launch(chromium, tmp_path / "profile") as browser,
    ):
        assert origin != api
        page = await browser.new_page()
        await page.goto(f"{origin}/index.html")
        signup = await page.evaluate(
            _fetch(
                f"{api}/signup",
                "POST",
                headers | {"X-Tenant": "acme"},  # allowed by GOTRUE_CORS_ALLOWED_HEADERS
                {"email": email, "password": "correct horse 42"},
            )
        )
        assert signup.get("status") == 200, signup
        token = signup["body"]["access_token"]

        user = await page.evaluate(
            _fetch(f"{api}/user", "GET", headers | {"Authorization": f"Bearer {token}"})
        )
        assert (user["status"], user["body"]["email"]) == (200, email)

        # Exposed to scripts by Access-Control-Expose-Headers, as GoTrue exposes it.
        listed = await page.evaluate(
            _fetch(
                f"{api}/admin/users", "GET", headers | {"Authorization": f"Bearer {service_role}"}
            )
        )
        assert listed["status"] == 200
        assert listed["total"] == "1"

        # A header the service does not allow: the browser refuses to send the call.
        refused = await page.evaluate(
            _fetch(f"{api}/user", "GET", headers | {"X-Not-Allowed": "1"})
        )
        assert refused == {"error": "TypeError"}

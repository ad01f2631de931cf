"""A real ``apitask-auth serve`` process per configuration, for the real client.

Each server gets a free port, its own SQLite file in a temp directory, and its
configuration from the environment only. Readiness is polled on ``/health``.
Mail is read back from the dev-mode JSON of recorded messages.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

JWT_SECRET = "acceptance-secret-at-least-32-bytes-long"
SERVER_START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Server:
    """A running service: its URL, and a way to read the mail it sent."""

    url: str
    service_key: str

    def mail(self) -> list[dict[str, Any]]:
        """Every message the server has rendered so far, oldest first."""
        messages: list[dict[str, Any]] = httpx.get(f"{self.url}/_dev/mail").json()
        return messages

    def last_mail_to(self, address: str) -> dict[str, Any]:
        """The newest message to ``address``."""
        matching = [message for message in self.mail() if message["to"] == address]
        assert matching, f"no mail to {address}"
        return matching[-1]

    def otp_for(self, address: str) -> str:
        """The code in the newest mail to ``address``."""
        found = re.search(r"enter the code: (\d+)", self.last_mail_to(address)["text"])
        assert found is not None
        return found.group(1)


def start_server(tmp: Path, **env: str) -> Iterator[Server]:
    """Run a server with ``env`` until the generator is closed."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GOTRUE_") and key not in {"DATABASE_URL", "API_EXTERNAL_URL"}
    }
    environment |= {
        "PORT": str(port),
        "GOTRUE_JWT_SECRET": JWT_SECRET,
        "GOTRUE_SITE_URL": "http://localhost:9999",
        "API_EXTERNAL_URL": url,
        "DATABASE_URL": f"sqlite:///{tmp / 'auth.db'}",
        "GOTRUE_URI_ALLOW_LIST": "https://supabase.io/docs",
    } | env
    log = (tmp / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "apitask_auth.cli", "serve", "--dev"],
        env=environment,
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited: {(tmp / 'server.log').read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready: {(tmp / 'server.log').read_text()}")
            time.sleep(0.05)  # polling a subprocess's port; nothing to wait on instead
        service_key = jwt.encode({"role": "service_role"}, JWT_SECRET, algorithm="HS256")
        yield Server(url, service_key)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module", params=["inline", "request"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with autoconfirm off, in each delivery mode available."""
    tmp = tmp_path_factory.mktemp(f"auth-{request.param}")
    yield from start_server(tmp, GOTRUE_MAILER_DELIVERY=request.param)


@pytest.fixture(scope="module")
def autoconfirm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with autoconfirm on."""
    yield from start_server(
        tmp_path_factory.mktemp("auth-autoconfirm"), GOTRUE_MAILER_AUTOCONFIRM="true"
    )

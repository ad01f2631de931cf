"""How the acceptance tests start ``apitask-auth serve --dev``: command and environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

JWT_SECRET = "acceptance-test-secret-that-is-long-enough-for-hs256"


def _service_command() -> list[str]:
    found = shutil.which("apitask-auth", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "apitask_auth.cli"]


# Resolved at import: looking up the console script stats files, not for the event loop.
SERVE_DEV = [*_service_command(), "serve", "--dev"]


def generated_keys(alg: str) -> str:
    """What ``apitask-auth keys generate --alg ALG`` prints: a JSON array with one
    private JWK (for GOTRUE_JWT_KEYS)."""
    done = subprocess.run(
        [*_service_command(), "keys", "generate", "--alg", alg],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def dev_environment(port: int) -> dict[str, str]:
    """This process's environment without GoTrue settings, plus a dev service on ``port``.

    No GOTRUE_SMTP_HOST, so mail goes to the dev inbox. The site URL (where
    /verify redirects) is a page of the service itself, so a browser lands on
    something real without a second server. Run it with a temp dir as cwd: the
    SQLite file is created there.
    """
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
        "GOTRUE_SITE_URL": f"{origin}/health",
        "GOTRUE_URI_ALLOW_LIST": f"{origin}/**",
        "GOTRUE_JWT_SECRET": JWT_SECRET,
        "GOTRUE_MAILER_AUTOCONFIRM": "false",
    }


def smtp_environment(host: str, port: int) -> dict[str, str]:
    """Settings that send the service's mail to the SMTP server at ``host:port``."""
    return {
        "GOTRUE_SMTP_HOST": host,
        "GOTRUE_SMTP_PORT": str(port),
        "GOTRUE_SMTP_ADMIN_EMAIL": "auth@example.com",
    }


async def sign_up(base_url: str, addresses: list[str]) -> None:
    """Sign each address up (autoconfirm off: each gets a confirmation mail)."""
    # verify=False: plain http on loopback, and no CA bundle read on the loop.
    async with httpx.AsyncClient(base_url=base_url, verify=False) as http:
        for address in addresses:
            response = await http.post(
                "/signup", json={"email": address, "password": "secret-password"}
            )
            assert response.status_code == 200, response.text

"""What `apitask-auth serve` writes to its log holds no live secret and no address.

A real server process, without GOTRUE_SMTP_HOST (GoTrue's no-op mailer: mail
is logged and dropped) and with a subject template that carries the code,
as some deployments write it. Its whole output (JSON log lines, uvicorn's
access lines included) is read after it stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import TYPE_CHECKING

import httpx

from ._service import JWT_SECRET, SERVE_DEV
from ._uvicorn import free_port, running_process

if TYPE_CHECKING:
    from pathlib import Path

SERVE = SERVE_DEV[:-1]  # without --dev: no dev inbox, so the no-op mailer
MIGRATE = [*SERVE_DEV[:-2], "migrate"]
TOKEN = "918273"
TOKEN_HASH = "pkce_5b1e6a0c9f1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b"


def production_environment(port: int, tmp_path: Path) -> dict[str, str]:
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GOTRUE_") and key not in {"API_EXTERNAL_URL", "DATABASE_URL"}
    }
    return {
        **base,
        "PORT": str(port),
        "API_EXTERNAL_URL": f"http://127.0.0.1:{port}",
        "GOTRUE_SITE_URL": "http://localhost:3000",
        "GOTRUE_JWT_SECRET": JWT_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'auth.db'}",
        "GOTRUE_LOG_FORMAT": "json",
        "GOTRUE_MAILER_SUBJECTS_CONFIRMATION": "{{ .Token }} is your verification code",
    }


async def test_the_log_holds_no_code_token_or_address(tmp_path: Path) -> None:
    env = production_environment(free_port(), tmp_path)
    migrate = await asyncio.create_subprocess_exec(*MIGRATE, env=env, cwd=tmp_path)
    assert await migrate.wait() == 0
    local = f"logged-{uuid.uuid4().hex[:8]}"
    async with running_process(SERVE, env=env, cwd=tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            signup = await http.post(
                "/signup", json={"email": f"{local}@example.com", "password": "secret-password"}
            )
            assert signup.status_code == 200, signup.text
            await http.get(f"/verify?type=signup&token={TOKEN}&redirect_to=http://localhost:3000")
            await http.get(f"/verify?type=signup&token_hash={TOKEN_HASH}")
            await http.post(f"/verify?code={TOKEN}&nonce={TOKEN}", json={})
        await asyncio.to_thread(server.stop)
        log = server.log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    # The mail was dropped and said so: its type and the recipient's domain...
    assert any(
        message == "mail: dropped confirmation mail to a recipient at example.com "
        "(no SMTP host configured)"
        for message in messages
    ), log
    # ... and the requests were logged, without their secrets.
    verify_lines = [message for message in messages if '"GET /verify?' in message]
    assert len(verify_lines) == 2, log
    assert "token=REDACTED" in verify_lines[0]
    assert "redirect_to=http://localhost:3000" in verify_lines[0]
    assert "token_hash=REDACTED" in verify_lines[1]
    assert any('"POST /verify?code=REDACTED&nonce=REDACTED' in message for message in messages)
    # Nowhere: the code the subject carried, the token sent, the address.
    assert "verification code" not in log
    assert TOKEN not in log
    assert TOKEN_HASH not in log
    assert local not in log

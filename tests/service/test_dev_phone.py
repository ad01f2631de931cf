"""``scripts/serve`` demonstrates phone sign-in with no account anywhere.

The real ``apitask-auth serve --dev`` process (uvicorn, the SQLite file, the
dev inbox), started with no configuration at all: a phone ``/otp`` is
accepted, the text reaches ``/_dev/inbox/texts``, its code signs the number
in, and the landing page shows how to do exactly that.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[str]:
    """``apitask-auth serve --dev`` in an empty directory, no GOTRUE_* set: its URL."""
    port = _free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("GOTRUE_") and name not in {"DATABASE_URL", "API_EXTERNAL_URL"}
    }
    env["PORT"] = str(port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "apitask_auth.cli", "serve", "--dev"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "Uvicorn running on" in line:
                ready.set()
        ready.set()  # ended: the assertion below says so

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(60) and proc.poll() is None, "".join(lines[-30:])
        yield f"http://localhost:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
        reader.join(10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_phone_sign_in_on_the_dev_server_with_no_configuration(dev_server: str) -> None:
    phone = "15555550123"
    with httpx.Client(base_url=dev_server, timeout=30) as client:
        answer = client.post("/otp", json={"phone": f"+{phone}"})
        assert answer.status_code == 200, answer.text
        texts = client.get("/_dev/inbox/texts", params={"to": phone, "wait": 10}).json()
        assert [text["to"] for text in texts] == [f"+{phone}"]
        code = re.search(r"\d{6}", texts[0]["text"])
        assert code is not None, texts[0]["text"]
        session = client.post(
            "/verify", json={"type": "sms", "phone": f"+{phone}", "token": code.group()}
        )
        assert session.status_code == 200, session.text
        assert session.json()["user"]["phone"] == phone
        # The landing page shows the same steps, against this server.
        page = client.get("/").text
        assert f"curl -X POST {dev_server}/otp" in page
        assert f"{dev_server}/_dev/inbox/texts?to=" in page
        assert "&quot;type&quot;: &quot;sms&quot;" in page  # escaped, as all of the example

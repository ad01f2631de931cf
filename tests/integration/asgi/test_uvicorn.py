"""End to end under a real uvicorn process: what the client sees, and when.

The server records the order of events on its side (see e2e_app.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

HERE = Path(__file__).resolve().parent


class Server:
    """A running uvicorn: its base URL and its process."""

    def __init__(self, url: str, process: asyncio.subprocess.Process) -> None:
        self.url = url
        self.process = process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_until_ready(url: str, process: asyncio.subprocess.Process) -> None:
    """Poll /health until it answers (the server is up) or the process died."""
    async with httpx.AsyncClient(timeout=1) as client, asyncio.timeout(30):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"uvicorn exited with {process.returncode} before serving")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.05)  # polling for readiness, not ordering the test


@contextlib.asynccontextmanager
async def uvicorn_server(**env: str) -> AsyncIterator[Server]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "e2e_app:app",
        env={**os.environ, **env},
    )
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        await wait_until_ready(server.url, process)
        yield server
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.wait()


async def test_before_response_holds_the_body_until_the_task_finishes() -> None:
    """The client gets /work's body only after the task is done; the call returns last."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        work = asyncio.create_task(client.get("/work"))
        # /release lets the task finish only once the app tried to send the final body.
        assert (await client.get("/release")).text == "released"
        assert (await work).text == "done"
        log = (await client.get("/log")).json()
    assert log == ["task done", "final body sent", "call returned"]


async def test_after_response_sends_the_body_first_and_returns_after_the_task() -> None:
    """The client gets the whole response while the task is still blocked."""
    async with (
        uvicorn_server(APITASK_WAIT="after_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        # Nobody has released the task yet: the response cannot have waited for it.
        assert (await client.get("/work")).text == "done"
        assert (await client.get("/release")).text == "released"
        log = (await client.get("/log")).json()
    assert log == ["final body sent", "task done", "call returned"]


async def test_after_response_tasks_are_drained_on_sigterm(tmp_path: Path) -> None:
    """uvicorn's graceful shutdown waits for the ASGI call, hence for the task."""
    marker = tmp_path / "sent"
    async with uvicorn_server(
        APITASK_WAIT="after_response", APITASK_E2E_MARKER=str(marker)
    ) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            assert (await client.get("/drain")).text == "queued"
        assert not await asyncio.to_thread(marker.exists)  # the task ends 0.3 s later
        server.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            # uvicorn re-raises the signal once shut down gracefully
            assert await server.process.wait() in (0, -signal.SIGTERM)
    assert await asyncio.to_thread(marker.read_text) == "sent"

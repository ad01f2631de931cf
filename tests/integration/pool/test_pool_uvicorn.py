"""A real uvicorn process: SIGTERM drains the pool's queued tasks before exit."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_sigterm_completes_every_queued_task_before_exit(tmp_path: Path) -> None:
    """8 slow tasks queued on 2 workers; SIGTERM right after: all 8 lines written
    before the process exits."""
    out = tmp_path / "done.txt"
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "pool_app:app",
        env={"POOL_APP_OUT": str(out), "PATH": "", "PYTHONUNBUFFERED": "1"},
        stderr=asyncio.subprocess.PIPE,
    )
    assert server.stderr is not None
    log: list[str] = []
    try:
        async with asyncio.timeout(30):
            while "Uvicorn running on" not in (line := (await server.stderr.readline()).decode()):
                assert line, f"uvicorn exited early: {''.join(log)}"
                log.append(line)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post("/enqueue", params={"n": 8})
            assert response.json() == {"submitted": 8}
            stats = (await client.get("/stats")).json()
        assert stats["queued"] > 0  # the response did not wait for the tasks
        server.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            rest = await server.stderr.read()
            code = await server.wait()
    finally:
        if server.returncode is None:  # pragma: no cover - only when the test failed
            server.kill()
            await server.wait()
    log.append(rest.decode())
    # uvicorn re-raises the signal it handled once its shutdown is complete
    assert code in (0, -signal.SIGTERM), "".join(log)
    assert "Application shutdown complete" in "".join(log)
    lines = (await asyncio.to_thread(out.read_text)).splitlines()
    assert sorted(lines) == sorted(f"done {i}" for i in range(8))
    assert "did not complete" not in "".join(log)

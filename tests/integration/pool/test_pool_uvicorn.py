"""A real uvicorn process: SIGTERM drains the pool's queued tasks before exit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from acceptance._uvicorn import GRACEFUL_EXIT, running_process, uvicorn_command

HERE = Path(__file__).resolve().parent


async def test_sigterm_completes_every_queued_task_before_exit(tmp_path: Path) -> None:
    """8 slow tasks queued on 2 workers; SIGTERM right after: all 8 lines written
    before the process exits."""
    out = tmp_path / "done.txt"
    command = uvicorn_command("pool_app:app", "--app-dir", str(HERE))
    env = {"POOL_APP_OUT": str(out), "PATH": "", "PYTHONUNBUFFERED": "1"}
    async with running_process(command, env=env) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.post("/enqueue", params={"n": 8})
            assert response.json() == {"submitted": 8}
            stats = (await client.get("/stats")).json()
        assert stats["queued"] > 0  # the response did not wait for the tasks
        code = await asyncio.to_thread(server.stop)
    log = server.log
    assert code in GRACEFUL_EXIT, log
    assert "Application shutdown complete" in log
    lines = (await asyncio.to_thread(out.read_text)).splitlines()
    assert sorted(lines) == sorted(f"done {i}" for i in range(8))
    assert "did not complete" not in log

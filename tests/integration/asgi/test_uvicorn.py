"""End to end under a real uvicorn process: what the client sees, and when.

The server records the order of events on its side (see e2e_app.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from acceptance._uvicorn import GRACEFUL_EXIT, running_process, uvicorn_command

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from acceptance._uvicorn import ServerProcess

HERE = Path(__file__).resolve().parent


@contextlib.asynccontextmanager
async def uvicorn_server(**env: str) -> AsyncIterator[ServerProcess]:
    """e2e_app under a real uvicorn, with ``env`` added to this process's environment."""
    command = uvicorn_command("e2e_app:app", "--app-dir", str(HERE))
    async with running_process(command, env={**os.environ, **env}) as server:
        yield server


async def test_before_response_holds_the_body_until_the_task_finishes() -> None:
    """The client gets /work's response, headers too, only after the task is done
    (the start goes out with the end); the call returns last."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        work = asyncio.create_task(client.get("/work"))
        # /release lets the task finish only once the app tried to send the final body.
        assert (await client.get("/release")).text == "released"
        assert (await work).text == "done"
        log = (await client.get("/log")).json()
    assert log == ["task done", "start sent", "final body sent", "call returned"]


async def test_before_response_turns_a_failure_after_the_start_into_a_500() -> None:
    """The held start never reached uvicorn, so it answers 500 instead of
    cutting a 200 short (the client would see the connection drop)."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        response = await client.get("/start-then-raise/")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"


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
    assert log == ["start sent", "final body sent", "task done", "call returned"]


async def test_after_response_tasks_are_drained_on_sigterm(tmp_path: Path) -> None:
    """uvicorn's graceful shutdown waits for the ASGI call, hence for the task."""
    marker = tmp_path / "sent"
    async with uvicorn_server(
        APITASK_WAIT="after_response", APITASK_E2E_MARKER=str(marker)
    ) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            assert (await client.get("/drain")).text == "queued"
        assert not await asyncio.to_thread(marker.exists)  # the task ends 0.3 s later
        assert await asyncio.to_thread(server.stop) in GRACEFUL_EXIT
    assert await asyncio.to_thread(marker.read_text) == "sent"

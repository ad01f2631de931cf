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
import pytest

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


ONE_MESSAGE = ["task done", "start sent", "final body sent", "call returned"]


async def released(client: httpx.AsyncClient, path: str, method: str = "GET") -> httpx.Response:
    """``method path``, with /release (the task may end once the final body was tried)."""
    work = asyncio.create_task(client.request(method, path))
    assert (await client.get("/release")).text == "released"
    return await work


async def server_log(client: httpx.AsyncClient) -> list[str]:
    """e2e_app's log, once the recorded call is over."""
    log: list[str] = (await client.get("/log")).json()
    return log


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_before_response_holds_the_body_until_the_task_finishes(method: str) -> None:
    """The client gets /work's response, headers too, only after the task is done
    (the start goes out with the end); the call returns last. HEAD alike."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        response = await released(client, "/work", method)
        assert response.text == ("done" if method == "GET" else "")
        assert response.headers["content-length"] == "4"
        log = await server_log(client)
    assert log == ONE_MESSAGE


@pytest.mark.parametrize("status", [204, 304])
async def test_before_response_sends_an_empty_response_after_the_task(status: int) -> None:
    """A 204 or 304 (no body, no length) is one message too: it waits, whole."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        response = await released(client, f"/work/empty/{status}")
        assert (response.status_code, response.content) == (status, b"")
        log = await server_log(client)
    assert log == ONE_MESSAGE


async def test_before_response_starlette_background_task_runs_after_the_response() -> None:
    """A response's BackgroundTask runs after its final send, so after our wait: the
    client has the whole response while it is still blocked; the call returns last."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        assert (await released(client, "/work/background")).text == "done"
        assert (await client.get("/release-background")).text == "released"
        log = await server_log(client)
    assert log == [*ONE_MESSAGE[:3], "background done", "call returned"]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        pytest.param(10, ONE_MESSAGE, id="one chunk"),
        pytest.param(
            3 * 64 * 1024 + 1,
            ["start sent", *["chunk sent"] * 3, *ONE_MESSAGE[0:1], *ONE_MESSAGE[2:]],
            id="four chunks",
        ),
    ],
)
async def test_before_response_file_response_arrives_whole_and_ends_after_the_task(
    tmp_path: Path, size: int, expected: list[str]
) -> None:
    """uvicorn has no pathsend: FileResponse sends 64 KiB chunks. A small file is one
    message (headers after the task); a larger one streams, its last chunk waits."""
    data = os.urandom(size)
    path = tmp_path / "file.bin"
    await asyncio.to_thread(path.write_bytes, data)
    async with (
        uvicorn_server(APITASK_WAIT="before_response", APITASK_E2E_FILE=str(path)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        response = await released(client, "/work/file")
        assert response.content == data
        assert response.headers["content-length"] == str(size)
        log = await server_log(client)
    assert log == expected


async def test_before_response_stream_headers_leave_with_its_first_chunk() -> None:
    """A StreamingResponse whose first chunk comes late: status and headers reach
    uvicorn with it, not before; every chunk then flows, the end waits."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        work = asyncio.create_task(client.get("/work/late-stream"))
        # Answered while the generator waits, then lets it yield.
        assert (await client.get("/first-chunk")).json() == []
        assert (await client.get("/release")).text == "released"
        assert (await work).text == "ab"
        log = await server_log(client)
    assert log == ["start sent", "chunk sent", "chunk sent", *ONE_MESSAGE[0:1], *ONE_MESSAGE[2:]]


async def test_before_response_event_stream_flushes_its_headers_with_an_empty_chunk() -> None:
    """An SSE endpoint that yields b"" first: the client has the headers while the
    generator still waits for its first event (else this deadlocks)."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("GET", "/work/sse") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert (await client.get("/sse-event")).text == "sent"
        assert (await client.get("/release")).text == "released"
        assert await response.aread() == b"data: hi\n\n"
        log = await server_log(client)
    assert log == ["start sent", "chunk sent", "chunk sent", *ONE_MESSAGE[0:1], *ONE_MESSAGE[2:]]


async def test_before_response_generator_failing_before_its_first_chunk_gets_a_500() -> None:
    """The StreamingResponse's start was held, so uvicorn answers 500 after the task,
    instead of a 200 cut short."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        response = await client.get("/work/stream-raise/before")
        assert (response.status_code, response.text) == (500, "Internal Server Error")
        log = await server_log(client)
    assert log == ["task done", "call raised"]
    assert "generator failed before its first chunk" in server.log


async def test_before_response_generator_failing_after_its_first_chunk_cuts_the_body() -> None:
    """Once a chunk is out the status is too: the client sees the body cut short
    (the error surfaces), and the call raises only once the task is done."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        async with client.stream("GET", "/work/stream-raise/after") as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                await response.aread()
        log = await server_log(client)
    assert log == ["start sent", "chunk sent", "task done", "call raised"]
    assert "generator failed after its first chunk" in server.log


async def request_then_hang_up(server: ServerProcess, client: httpx.AsyncClient, path: str) -> None:
    """Send ``GET path`` on a connection of its own, and close it once the app tried
    to send the final body (the start still held, for a one-message response)."""
    url = httpx.URL(server.url)
    assert url.port is not None
    _reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: test\r\n\r\n".encode())
    await writer.drain()
    assert (await client.get("/attempted")).text == "attempted"
    writer.close()
    await writer.wait_closed()


async def test_before_response_client_gone_while_the_start_is_held() -> None:
    """uvicorn drops what is sent after the client left, without an error: the call
    still ends after the task and nothing is logged as an app failure."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        await request_then_hang_up(server, client, "/work/watched")
        assert (await client.get("/release-when-gone")).text == "released"
        log = await server_log(client)
        assert (await client.get("/health")).text == "ok"
    assert log == ["client gone", *ONE_MESSAGE]
    assert "Exception in ASGI application" not in server.log
    assert "ASGI callable returned" not in server.log


@pytest.mark.parametrize("chunks", [1, 0])
async def test_before_response_client_gone_cancels_a_held_stream_end_not_the_task(
    chunks: int,
) -> None:
    """uvicorn speaks ASGI 2.3, so StreamingResponse listens for the disconnect and
    cancels its held final send: the call still waits for the task."""
    async with (
        uvicorn_server(APITASK_WAIT="before_response") as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        await request_then_hang_up(server, client, f"/work/stream/{chunks}")
        assert (await client.get("/release-when-cancelled")).text == "released"
        log = await server_log(client)
    if chunks:
        assert log == [
            "start sent",
            "chunk sent",
            "final send cancelled",
            *ONE_MESSAGE[0:1],
            "call returned",
        ]
    else:
        # The app returned with its start still held: the middleware sends it as
        # the app did (uvicorn drops it), racing the task's end; the call waits.
        assert log[0] == "final send cancelled" and log[-1] == "call returned"
        assert sorted(log[1:-1]) == ["start sent", "task done"]
    assert "Exception in ASGI application" not in server.log


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

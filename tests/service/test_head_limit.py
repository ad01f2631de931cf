"""Request heads over 32 KiB get a 431 (#14 item 9): in the app, and from `serve`.

The review sent an 8 MiB header and got 200: uvicorn's httptools protocol
buffers a head of any size. `apitask-auth serve` now runs a protocol that
counts the head as it arrives; the app itself refuses too, under any server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

from acceptance._service import SERVE_DEV, dev_environment
from acceptance._uvicorn import free_port, running_process
from apitask_auth.http.limits import MAX_HEAD_BYTES, head_size

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Service

_CHUNK = 1 << 16


def test_the_head_counts_target_names_and_values() -> None:
    assert head_size(b"/a?b=c", [(b"host", b"x"), (b"x-big", b"12")]) == 6 + 5 + 7
    assert MAX_HEAD_BYTES == 32 * 1024


async def test_the_app_answers_431_in_gotrue_format(svc: Service) -> None:
    fits = await svc.http.get("/health", headers={"x-big": "a" * (MAX_HEAD_BYTES - 200)})
    assert fits.status_code == 200
    over = await svc.http.get("/health", headers={"x-big": "a" * MAX_HEAD_BYTES})
    assert over.status_code == 431
    assert over.json() == {
        "code": 431,
        "error_code": "request_header_fields_too_large",
        "msg": "Request header fields too large",
    }
    long_query = await svc.http.get("/health?q=" + "a" * MAX_HEAD_BYTES)
    assert long_query.status_code == 431


async def _send_head(url: str, value_size: int, extra: bytes = b"") -> bytes:
    """Send ``GET /health`` with an ``X-Big`` header of ``value_size`` bytes, in
    64 KiB writes, reading the answer meanwhile; return the answer's head."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))

    async def send() -> None:
        # The server may stop reading and close once it has answered.
        with contextlib.suppress(ConnectionError):
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for start in range(0, value_size, _CHUNK):
                writer.write(b"a" * min(_CHUNK, value_size - start))
                await writer.drain()
            writer.write(b"\r\n" + extra + b"\r\n")
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        return head + await reader.readexactly(length)
    finally:
        await sender
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_serve_answers_431_to_an_8_mib_header(tmp_path: Path) -> None:
    """End to end against `apitask-auth serve`: the 8 MiB probe, the exact limit
    (target + names + values), and a keep-alive connection that still works."""
    async with running_process(SERVE_DEV, env=dev_environment(free_port()), cwd=tmp_path) as server:
        refused = await _send_head(server.url, 8 << 20)
        assert refused.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        body = refused.split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["error_code"] == "request_header_fields_too_large"
        # "/health" (7) + "host" "x" (5) + "x-big" (5) + the value.
        largest = MAX_HEAD_BYTES - 17
        assert (await _send_head(server.url, largest)).startswith(b"HTTP/1.1 200 ")
        assert (await _send_head(server.url, largest + 1)).startswith(b"HTTP/1.1 431 ")
        # Many headers, each small, count together.
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000) for i in range(40))
        assert (await _send_head(server.url, 10, many)).startswith(b"HTTP/1.1 431 ")
        # Other malformed requests keep uvicorn's own 400.
        reader, writer = await asyncio.open_connection(*server.url[7:].rsplit(":", 1))
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 400 ")
        writer.close()
    assert "request head over 32768 bytes: answered 431" in server.log

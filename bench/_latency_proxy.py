"""A TCP proxy that delays what the server says by a fixed time (run as a process).

``python bench/_latency_proxy.py PORT TARGET_PORT DELAY`` listens on
127.0.0.1:PORT and forwards every connection to 127.0.0.1:TARGET_PORT; the
client's bytes go through at once, the server's are delivered DELAY seconds
after they arrive, in order, like a network link with that one-way latency
(netem without a network namespace). Replies sent together arrive together:
what a pipelining client gains on a distant server shows. Prints ``ready``
once listening.
"""

from __future__ import annotations

import asyncio
import sys


async def _pump_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
    writer.close()


async def _pump_down(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    loop = asyncio.get_running_loop()
    # Each chunk is written `delay` after it came: later chunks have later
    # deadlines, so the order holds.
    while data := await reader.read(65536):
        loop.call_later(delay, writer.write, data)
    loop.call_later(delay, writer.close)


async def serve(port: int, target: int, delay: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(
            _pump_up(client_r, server_w),
            _pump_down(server_r, client_w, delay),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))

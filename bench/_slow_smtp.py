"""A mail server that takes a fixed time to accept each mail (run as a process).

``python bench/_slow_smtp.py PORT DELAY`` serves SMTP on 127.0.0.1:PORT,
answers every DATA after DELAY seconds (the 300 ms of a slow provider), and
prints ``ready`` once listening and ``received N`` lines as mail arrives, so
the benchmark can tell when everything queued has been delivered.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiosmtpd.smtp import SMTP


class SlowHandler:
    """Accepts every mail after ``delay`` seconds and reports the running count."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # The delay is the point: it stands for a slow mail provider.
        await asyncio.sleep(self.delay)
        self.received += 1
        print(f"received {self.received}", flush=True)
        return "250 OK"


async def serve(port: int, delay: float) -> None:
    handler = SlowHandler(delay)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="slow-smtp.local"), "127.0.0.1", port
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2])))

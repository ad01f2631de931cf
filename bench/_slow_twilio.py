"""A Twilio Messages API server that takes a fixed time per message (run as a process).

``python bench/_slow_twilio.py DELAY`` serves the tests' Twilio stand-in
(tests/service/_twilio.py: real HTTP, Basic auth checked, Twilio's answers)
on a free loopback port, answering every message after DELAY seconds. It
prints ``ready URL`` once listening and ``received N`` as messages are
accepted, so the benchmark knows where to send and when all have arrived.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

# The stand-in lives with the tests; the benchmark uses the very same server.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from service._twilio import TwilioServer


async def serve(delay: float) -> None:
    async with TwilioServer(delay=delay) as server:
        print(f"ready {server.url}", flush=True)
        count = 0
        while True:
            # Wait for the next delivery, then report the running count.
            await server.wait_delivered(count + 1, timeout=3600)
            count = len(server.delivered)
            print(f"received {count}", flush=True)


if __name__ == "__main__":
    asyncio.run(serve(float(sys.argv[1])))

"""A real SMTP server (aiosmtpd) for sync tests: in a thread, or as its own process.

In-process: ``with Sink() as sink:`` serves on a free port of 127.0.0.1 and
keeps every accepted envelope; ``sink.fail_next(reply)`` answers the next
DATA with that reply instead (``DROP``: closes the connection). As a
process (``python smtp_sink.py [--delay S]``) it prints ``ready PORT``, then
``accepted MESSAGE-ID RCPT`` per recipient of each accepted mail, flushed,
for tests and the benchmark in other processes.
``--delay`` stands for a slow provider (the wait is the workload).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import threading
from collections import deque
from typing import Any

from aiosmtpd.smtp import SMTP

MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


class Handler:
    """Accepts every mail (after ``delay`` seconds), unless a failure was queued."""

    def __init__(self, delay: float = 0.0, announce: bool = False) -> None:
        self.delay = delay
        self.announce = announce
        self.envelopes: list[Any] = []
        self.failures: deque[str] = deque()
        self.refuse: dict[str, str] = {}
        """Recipient address -> the RCPT reply refusing it."""
        self.changed = threading.Condition()
        self.data_started = threading.Event()
        """Set when a DATA command arrives (before any delay)."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_started.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            reply = self.failures.popleft()
            if reply == "DROP":  # close the connection instead of answering
                server.transport.close()
            return reply
        with self.changed:
            self.envelopes.append(envelope)
            self.changed.notify_all()
        if self.announce:
            found = MESSAGE_ID.search(envelope.original_content or b"")
            message_id = found.group(1).decode() if found else "-"
            lines = "".join(f"accepted {message_id} {rcpt}\n" for rcpt in envelope.rcpt_tos)
            sys.stdout.write(lines)
            sys.stdout.flush()
        return "250 OK"


class Sink:
    """The server in a thread of this process, on a free port."""

    def __init__(self, delay: float = 0.0, announce: bool = False) -> None:
        self.handler = Handler(delay, announce)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Sink:
        async def start() -> asyncio.Server:
            return await self.loop.create_server(
                lambda: SMTP(self.handler, hostname="sink.test"), "127.0.0.1", 0
            )

        self._thread.start()
        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def messages(self) -> list[bytes]:
        return [bytes(e.original_content) for e in self.handler.envelopes]

    def fail_next(self, *replies: str) -> None:
        self.handler.failures.extend(replies)

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        with self.handler.changed:
            return self.handler.changed.wait_for(
                lambda: len(self.handler.envelopes) >= count, timeout
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    with Sink(args.delay, announce=True) as sink:
        sys.stdout.write(f"ready {sink.port}\n")
        sys.stdout.flush()
        threading.Event().wait()


if __name__ == "__main__":
    main()

"""A mail server for the chaos tests, run as its own process.

``python chaos_smtp.py [--delay S] [--flaky P] [--seed N] [--refuse PREFIX]``
listens on a free port of 127.0.0.1 and prints, one line each, flushed:

* ``ready PORT`` once it listens;
* ``accepted MESSAGE-ID RCPT`` for every mail it accepted (answered 250);
* ``failed KIND MESSAGE-ID`` for every attempt it failed on purpose:
  ``421`` (then it closes the connection, as RFC 5321 says), ``451``, or
  ``drop`` (the connection is closed after the data, before any reply: the
  client cannot know whether the mail was taken, so it must try again);
* ``refused 550 RCPT`` for a recipient starting with ``--refuse``.

``--flaky P`` fails that fraction of DATA attempts, drawn from a
``random.Random(seed)``; ``--delay S`` waits S seconds before answering each
DATA, standing for a slow provider (the wait is the workload, not a way to
order events). A mail counts as delivered only when it is ``accepted``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
from typing import Any

from aiosmtpd.smtp import SMTP

MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def say(line: str) -> None:
    # stdout is a pipe read by the test: one write + flush per event.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class ChaosHandler:
    """aiosmtpd hooks: refuse some recipients, fail some DATA attempts, accept the rest."""

    def __init__(self, delay: float, flaky: float, seed: int, refuse: str | None) -> None:
        self.delay = delay
        self.flaky = flaky
        self.refuse = refuse
        self.random = random.Random(seed)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse and address.startswith(self.refuse):
            say(f"refused 550 {address}")
            return "550 5.1.1 mailbox unavailable (chaos: refused for good)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        found = MESSAGE_ID.search(envelope.original_content or b"")
        message_id = found.group(1).decode() if found else "-"
        if self.delay:
            await asyncio.sleep(self.delay)
        draw = self.random.random()
        if draw < self.flaky:
            kind = ("421", "451", "drop")[int(draw / self.flaky * 3)]
            say(f"failed {kind} {message_id}")
            if kind == "451":
                return "451 4.3.0 try again later (chaos)"
            if kind == "421":
                await server.push("421 4.3.2 closing the connection (chaos)")
            server.transport.close()
            # aiosmtpd writes this to a closed transport, which discards it.
            return "421 4.3.2 closed"
        for rcpt in envelope.rcpt_tos:
            say(f"accepted {message_id} {rcpt}")
        return "250 OK"


async def serve(args: argparse.Namespace) -> None:
    handler = ChaosHandler(args.delay, args.flaky, args.seed, args.refuse)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="chaos-smtp.test"), "127.0.0.1", 0
    )
    say(f"ready {server.sockets[0].getsockname()[1]}")
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--flaky", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refuse")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()

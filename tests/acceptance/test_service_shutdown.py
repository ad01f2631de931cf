"""`apitask-auth serve` in pool mode: SIGTERM delivers every queued mail before exit.

The mail server is aiosmtpd on the test's own loop, holding every message
until the test lets it go: the sign-ups return while their mails wait in the
pool, the server gets SIGTERM, and only once uvicorn has begun its lifespan
shutdown (the pool's drain) is the mail server released. Every mail must
arrive before the process exits.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP

from ._service import SERVE_DEV, dev_environment, sign_up, smtp_environment
from ._uvicorn import GRACEFUL_EXIT, free_port, running_process

if TYPE_CHECKING:
    from pathlib import Path


class HeldMailServer:
    """aiosmtpd handler: accepts each message only once :attr:`release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.received: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        await self.release.wait()
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"


async def test_pool_mode_sigterm_delivers_every_queued_mail(tmp_path: Path) -> None:
    """More mails than pool workers are queued; after SIGTERM all of them are sent."""
    mail = HeldMailServer()
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        lambda: SMTP(mail, hostname="held-mail-server", loop=loop), "127.0.0.1", 0
    )
    smtp_port = smtp.sockets[0].getsockname()[1]
    workers = os.cpu_count() or 1  # GOTRUE_WORKER_COUNT_PER_CPU=1
    addresses = [f"drain-{uuid.uuid4().hex[:8]}@example.com" for _ in range(workers + 6)]
    env = dev_environment(free_port()) | {
        "GOTRUE_MAILER_DELIVERY": "pool",
        "GOTRUE_WORKER_COUNT_PER_CPU": "1",
        **smtp_environment("127.0.0.1", smtp_port),
    }
    try:
        async with running_process(SERVE_DEV, env=env, cwd=tmp_path) as server:
            await sign_up(server.url, addresses)
            # Every mail is still held: the responses did not wait for them.
            assert mail.received == []
            server.terminate()
            assert await asyncio.to_thread(
                server.wait_for_output, "Waiting for application shutdown."
            ), server.log
            mail.release.set()
            code = await asyncio.to_thread(server.stop)
    finally:
        smtp.close()
        await smtp.wait_closed()
    assert code in GRACEFUL_EXIT, server.log
    assert sorted(mail.received) == sorted(addresses)
    assert "Application shutdown complete" in server.log

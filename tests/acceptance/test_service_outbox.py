"""`apitask-auth serve` in outbox mode: mail survives kill -9 and `apitask-auth worker` sends it.

The server runs without its in-process worker, so the sign-ups' mails can only
be job rows. It is then killed with SIGKILL (no shutdown of any kind), and a
separate `apitask-auth worker --until-empty` process, given only the database
URL and the SMTP settings, delivers every mail exactly once to an SMTP catcher
on the test's loop.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import TYPE_CHECKING

from apitask_auth.delivery.devinbox import DevInbox

from ._service import SERVE_DEV, dev_environment, sign_up, smtp_environment
from ._uvicorn import free_port, running_process

if TYPE_CHECKING:
    from pathlib import Path

WORKER = [*SERVE_DEV[:-2], "worker"]


async def test_outbox_mail_survives_kill_9_and_a_separate_worker_sends_it(
    tmp_path: Path,
) -> None:
    """Committed sign-ups' mails are sent after a SIGKILL, by another process, once each."""
    addresses = [f"durable-{uuid.uuid4().hex[:8]}@example.com" for _ in range(3)]
    async with DevInbox() as smtp:
        assert smtp.address is not None
        env = dev_environment(free_port()) | {
            "GOTRUE_MAILER_DELIVERY": "outbox",
            "GOTRUE_OUTBOX_WORKER_ENABLED": "false",
            **smtp_environment(*smtp.address),
        }
        async with running_process(SERVE_DEV, env=env, cwd=tmp_path) as server:
            await sign_up(server.url, addresses)
            assert await asyncio.to_thread(server.kill) == -signal.SIGKILL
        assert smtp.messages() == []  # nobody has sent them: they are only rows

        worker = await asyncio.create_subprocess_exec(
            *WORKER,
            "--until-empty",
            env={**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'apitask-auth.db'}"},
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(60):
            log, _ = await worker.communicate()
        assert worker.returncode == 0, log.decode()
        received = sorted(to for message in smtp.messages() for to in message.envelope_to)
    assert received == sorted(addresses)

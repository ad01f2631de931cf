"""Scenario 4's process: sign-ups in outbox mode, with a worker in the same process.

``python -m chaos.signup_producer`` (with ``tests`` on the path) runs the
sign-ups numbered ``$CHAOS_SIGNUP_START`` (default 0) to ``$CHAOS_SIGNUPS``,
8 at a time, against PostgreSQL
(``$CHAOS_PG_DSN``, tables in ``$CHAOS_PG_SCHEMA``). Each is one SQLAlchemy
transaction: insert the user, enqueue the confirmation mail into the outbox
in the same transaction, and commit, or roll back when :func:`rolled_back`
says so (a failure after the enqueue). Like ``apitask-auth serve`` in outbox
mode, the process also runs an outbox worker, which sends the mail to the
chaos mail server (``$CHAOS_SMTP_PORT``). It prints ``ready`` once the
worker runs and ``done`` after the last sign-up, then serves until SIGTERM
(its worker drains) or SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from apitask.mail import MailTask
from apitask.outbox import Outbox
from apitask.outbox.postgres import PostgresStore

from .chaos_tasks import confirmation, records, smtp_client

ROLLBACK_RATE = 0.1
CONCURRENT = 8


def rolled_back(i: int) -> bool:
    """Whether sign-up ``i`` fails after its enqueue (seeded: the test knows which)."""
    return random.Random(f"signup:{i}").random() < ROLLBACK_RATE


class SignupFailed(Exception):
    """Raised inside a sign-up's transaction to roll it back."""


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main() -> None:
    dsn, schema = os.environ["CHAOS_PG_DSN"], os.environ["CHAOS_PG_SCHEMA"]
    start, end = int(os.environ.get("CHAOS_SIGNUP_START", "0")), int(os.environ["CHAOS_SIGNUPS"])
    smtp = smtp_client()
    registry = records()
    registry.register_prefix("mailer.", MailTask.factory(smtp))
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
    insert = text(f'INSERT INTO "{schema}".users (id, email) VALUES (:id, :email)')
    numbers = iter(range(start, end))

    async def sign_up(outbox: Outbox) -> None:
        for i in numbers:  # shared by the CONCURRENT sign-up loops
            email = f"user-{i}@example.org"
            message = confirmation(email)
            try:
                async with engine.begin() as conn:
                    await conn.execute(insert, {"id": i, "email": email})
                    await outbox.enqueue(conn, MailTask(message, smtp), f"confirm:{i}")
                    if rolled_back(i):
                        raise SignupFailed(i)
            except SignupFailed:
                pass

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    outbox = Outbox(PostgresStore(dsn, schema=schema), registry)
    async with outbox, outbox.worker(concurrency=16, lease=5.0):
        say("ready")
        await asyncio.gather(*(sign_up(outbox) for _ in range(CONCURRENT)))
        say("done")
        await stop.wait()  # serve until stopped, like a server
    await engine.dispose()
    await smtp.aclose()


if __name__ == "__main__":
    asyncio.run(main())

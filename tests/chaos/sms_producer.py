"""The SMS SIGKILL scenario's process: codes texted inside transactions, outbox mode.

``python -m chaos.sms_producer`` (with ``tests`` on the path) runs the
"sign-ins" numbered ``$CHAOS_TEXT_START`` (default 0) to ``$CHAOS_TEXTS``,
8 at a time, on the SQLite file ``$CHAOS_DB``, through the service's own
delivery parts: a :class:`DeliveryRuntime` in outbox mode (with its
in-process outbox worker) and the :class:`SmsChain` sending through Twilio
at ``$CHAOS_TWILIO_URL``. Each sign-in is one transaction, as a phone flow's:
insert a row, text the code (its job row written in the transaction), and
commit, or roll back when :func:`rolled_back` says so (a failure after the
text was declared). It prints ``ready`` once the worker runs and ``done``
after the last one, then serves until SIGTERM (its worker drains) or SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

import apitask
from apitask import Backoff
from apitask_auth.config import load_settings
from apitask_auth.delivery.runtime import DeliveryRuntime
from apitask_auth.delivery.sms import SmsChain
from apitask_auth.delivery.sms.provider import provider_for
from apitask_auth.storage.db import create_engine
from apitask_auth.storage.migrations import migrate_all

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

ROLLBACK_RATE = 0.1
CONCURRENT = 8


def rolled_back(i: int) -> bool:
    """Whether sign-in ``i`` fails after its text was declared (seeded: the test knows)."""
    return random.Random(f"sms:{i}").random() < ROLLBACK_RATE


def phone(i: int) -> str:
    """Sign-in ``i``'s number, E.164 without the "+"."""
    return f"1555{i:07d}"


class SignInFailed(Exception):
    """Raised inside a sign-in's transaction to roll it back."""


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def texting_parts(
    url: str, backoff: Backoff, **settings: Any
) -> tuple[AsyncEngine, DeliveryRuntime, SmsChain]:
    """The service's delivery parts on SQLite ``url``, migrated: engine, runtime, SMS chain."""
    config = load_settings(
        env_file=None,
        site_url="http://localhost:3000",
        api_external_url="http://localhost:9999",
        jwt_secret="s" * 32,
        database_url=url,
        **settings,
    )
    # Building them touches the file system (SQLite paths): off the loop.
    engine = await asyncio.to_thread(create_engine, url)
    runtime = await asyncio.to_thread(DeliveryRuntime, config, backoff=backoff)
    await migrate_all(engine, url)
    provider = provider_for(config)
    assert provider is not None
    return engine, runtime, SmsChain(config, runtime, provider)


async def main() -> None:
    url = f"sqlite:///{os.environ['CHAOS_DB']}"
    start, end = int(os.environ.get("CHAOS_TEXT_START", "0")), int(os.environ["CHAOS_TEXTS"])
    engine, runtime, chain = await texting_parts(
        url,
        Backoff(base=0.05, cap=0.5, max_attempts=20),
        mailer_delivery="outbox",
        outbox_worker_lease="2s",
        sms_provider="twilio",
        sms_twilio_account_sid=os.environ["CHAOS_TWILIO_SID"],
        sms_twilio_auth_token=os.environ["CHAOS_TWILIO_TOKEN"],
        sms_twilio_message_service_sid="MG1",
        sms_twilio_api_base_url=os.environ["CHAOS_TWILIO_URL"],
    )
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS signins (id integer PRIMARY KEY)"))
    assert runtime.outbox is not None
    sink = runtime.outbox.sink
    numbers = iter(range(start, end))

    async def sign_in() -> None:
        for i in numbers:  # shared by the CONCURRENT loops
            try:
                scope = apitask.scope(request_id=f"signin-{i}", sink=sink)
                async with scope, engine.begin() as conn:
                    await conn.execute(text("INSERT INTO signins (id) VALUES (:i)"), {"i": i})
                    await chain.send(phone(i), f"{i:06d}", user=None, connection=conn)  # type: ignore[arg-type]
                    if rolled_back(i):
                        raise SignInFailed(i)
            except SignInFailed:
                pass

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await runtime.start()
    say("ready")
    await asyncio.gather(*(sign_in() for _ in range(CONCURRENT)))
    say("done")
    await stop.wait()  # serve until stopped, like a server
    await runtime.aclose()
    await chain.aclose()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())

"""The chaos scenarios of mail, repeated for text messages through the service's SMS chain.

* A Twilio failing 20% of attempts (500, 429, dropped connections; seeded):
  in pool and in outbox mode every text is delivered, none twice (a failed
  attempt never reached the provider's "delivered" list).
* SIGKILL in outbox mode: ``sms_producer`` texts codes inside transactions
  (10% roll back after the text was declared) while its in-process worker
  sends them; half-way it is SIGKILLed, with transactions in flight, and a
  new producer on the same SQLite file takes over (and, once their leases
  expire, the killed one's jobs). Every committed code is texted at least
  once; no rolled-back or cut-short one is.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

import apitask
from apitask import Backoff
from service._twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioServer

from ._support import SEED, Tally, env_with, poll, python, size
from .sms_producer import phone, rolled_back, texting_parts

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TEXTS = size(300, 3_000)
CONCURRENT = 16


def _delivered(twilio: TwilioServer) -> Counter[str]:
    return Counter(form["To"].removeprefix("+") for form in twilio.delivered)


@pytest.mark.parametrize("mode", ["pool", "outbox"])
async def test_provider_failing_20_percent_every_text_delivered(
    tmp_path: Path, mode: str, chaos_report: Callable[[Tally], None]
) -> None:
    """500/429/drops on 20% of attempts: every text delivered, none twice."""
    async with TwilioServer(flaky=0.2, seed=SEED) as twilio:
        url = f"sqlite:///{tmp_path / 'auth.db'}"
        # 20% per attempt: 10 attempts leave a text undelivered with odds 0.2**10 = 1e-7.
        backoff = Backoff(base=0.02, cap=0.2, max_attempts=10)
        engine, runtime, chain = await texting_parts(
            url, backoff, mailer_delivery=mode, **twilio.settings()
        )
        await runtime.start()
        sink: Any = runtime.pool if runtime.pool is not None else runtime.outbox.sink  # type: ignore[union-attr]
        numbers = iter(range(TEXTS))

        async def send() -> None:
            for i in numbers:
                scope = apitask.scope(request_id=f"text-{i}", sink=sink)
                async with scope, engine.begin() as conn:
                    await chain.send(phone(i), f"{i:06d}", user=None, connection=conn)  # type: ignore[arg-type]

        try:
            await asyncio.gather(*(send() for _ in range(CONCURRENT)))
            await twilio.wait_delivered(TEXTS, timeout=240)
        finally:
            await runtime.aclose()
            await chain.aclose()
            await engine.dispose()
    sent = {phone(i) for i in range(TEXTS)}
    tally = Tally(
        f"SMS, {mode}, Twilio failing 20% of attempts",
        sent=sent,
        deliveries=_delivered(twilio),
        notes={f"failed {kind}": n for kind, n in sorted(twilio.failed.items())},
    )
    chaos_report(tally)
    assert (tally.lost, tally.duplicated, tally.unexpected) == (0, 0, set())
    assert sum(twilio.failed.values()) > TEXTS // 10  # the chaos happened
    assert set(twilio.failed) == {"500", "429", "drop"}
    texts = {form["To"]: form["Body"] for form in twilio.delivered}
    assert texts[f"+{phone(7)}"] == "Your code is 000007"


def _count(db: Path, query: str) -> Callable[[], Any]:
    async def probe() -> int:
        def read() -> int:
            with sqlite3.connect(db, timeout=30) as conn:
                try:
                    return int(conn.execute(query).fetchone()[0] or 0)
                except sqlite3.OperationalError:  # the table is not there yet
                    return 0

        return await asyncio.to_thread(read)

    return probe


async def test_sigkill_in_outbox_mode_every_committed_code_texted(
    tmp_path: Path, chaos_report: Callable[[Tally], None]
) -> None:
    """Committed codes texted at least once; rolled-back and cut-short ones never."""
    db = tmp_path / "auth.db"
    async with TwilioServer() as twilio:
        env = env_with(
            CHAOS_DB=str(db),
            CHAOS_TEXTS=str(TEXTS),
            CHAOS_TWILIO_URL=twilio.url,
            CHAOS_TWILIO_SID=ACCOUNT_SID,
            CHAOS_TWILIO_TOKEN=AUTH_TOKEN,
        )
        producer = await python("-m", "chaos.sms_producer", env=env, stdout=True)
        restarted = None
        try:
            assert await producer.line(timeout=60) == "ready"
            await poll(
                _count(db, "SELECT count(*) FROM signins"),
                lambda n: n >= TEXTS // 2,
                what=f"{TEXTS // 2} sign-ins",
                timeout=120,
            )
            producer.signal(signal.SIGKILL)
            assert await producer.wait(30) == -signal.SIGKILL
            resume = await _count(db, "SELECT max(id) + 1 FROM signins")()
            restarted = await python(
                "-m", "chaos.sms_producer", env=env | {"CHAOS_TEXT_START": str(resume)},
                stdout=True,
            )  # fmt: skip
            assert await restarted.line(timeout=60) == "ready"
            assert await restarted.line(timeout=120) == "done"
            await poll(
                _count(db, "SELECT count(*) FROM apitask_jobs WHERE state <> 'succeeded'"),
                lambda n: n == 0,
                what="every job succeeded",
                timeout=120,
            )
            restarted.signal(signal.SIGTERM)
            assert await restarted.wait(60) == 0
        finally:
            for started in (producer, restarted):
                if started is not None:
                    await started.reap()

    def read() -> tuple[set[int], int, int]:
        with sqlite3.connect(db) as conn:
            ids = {row[0] for row in conn.execute("SELECT id FROM signins")}
            jobs = conn.execute("SELECT count(*) FROM apitask_jobs").fetchone()[0]
            kept = conn.execute("SELECT count(*) FROM apitask_jobs WHERE payload <> '{}'")
            return ids, jobs, kept.fetchone()[0]

    committed, jobs, with_payload = await asyncio.to_thread(read)
    refused = {i for i in range(TEXTS) if rolled_back(i)}
    cut_short = TEXTS - len(committed) - len(refused)
    deliveries = _delivered(twilio)
    tally = Tally(
        "SMS, outbox, SIGKILL mid-run, restarted",
        sent={phone(i) for i in committed},
        deliveries=deliveries,
        notes={"rolled back": len(refused), "cut short by the kill": cut_short},
    )
    chaos_report(tally)
    assert max(committed) >= resume >= TEXTS // 2  # sign-ins before the kill and after
    assert not refused & committed  # a rolled-back sign-in left no row...
    assert (tally.lost, tally.unexpected) == (0, set())  # ...and no text
    assert jobs == len(committed)  # one job per committed code, none for the others
    assert with_payload == 0  # every succeeded job's number and code are erased
    for i in committed:
        assert f"Your code is {i:06d}" in twilio.texts_to(phone(i))

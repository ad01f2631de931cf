"""The phone case of bench/latency.py: what a slow SMS provider costs ``POST /otp {phone}``.

Two Twilio stand-ins run as processes (bench/_slow_twilio.py): one answers
each message after the slow delay, one at once. Two ``apitask-auth serve``
processes in the same delivery mode, each on its own SQLite file, send
through one each. Requests alternate between the two services (a fresh
number each time, so every request creates an account and sends a code), so
the machine's load falls on both alike; the ratio of their latencies is what
the slow provider still costs the request.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from _service import HERE, LineWatcher, helper_process, postgres_database, service, wait_delivered

sys.path.insert(0, str(HERE.parent / "tests"))
from service._twilio import ACCOUNT_SID, AUTH_TOKEN, SENDER

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextlib.contextmanager
def slow_twilio(delay: float) -> Iterator[tuple[str, LineWatcher]]:
    """A Twilio stand-in process taking ``delay`` s per message: (its URL, its output)."""
    with helper_process("_slow_twilio.py", delay) as (ready, watcher):
        yield ready.split()[-1], watcher


def phone_settings(twilio_url: str) -> dict[str, str]:
    """Environment that turns phone sign-in on and sends through the stand-in at ``twilio_url``."""
    return {
        "GOTRUE_EXTERNAL_PHONE_ENABLED": "true",
        "GOTRUE_SMS_PROVIDER": "twilio",
        "GOTRUE_SMS_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "GOTRUE_SMS_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "GOTRUE_SMS_TWILIO_MESSAGE_SERVICE_SID": SENDER,
        "GOTRUE_SMS_TWILIO_API_BASE_URL": twilio_url,
        # Timing, not limits: lift them, but keep the SMS allowance's row in the
        # path (every text takes its unit, as in a default deployment).
        "GOTRUE_RATE_LIMIT_SMS_SENT": "1000000",
        "GOTRUE_RATE_LIMIT_OTP": "1000000",
        "GOTRUE_SMS_MAX_FREQUENCY": "1us",
    }


def otp_latencies(
    slow: httpx.Client, fast: httpx.Client, n: int, warmup: int, pause: float = 0.0
) -> tuple[list[float], list[float]]:
    """``POST /otp {phone}`` to each service in turn, ``warmup + n`` times each; ms kept
    after the warm-up: (slow provider, 0 ms provider).

    ``pause``: seconds waited (untimed) before each request, so that the text
    the last request queued is sent before the next request starts: without
    it, the 0 ms service's delivery lands on the other service's request
    (docs/benchmarks.md, phone section)."""
    times: dict[str, list[float]] = {"slow": [], "fast": []}
    for i in range(warmup + n):
        phone = f"+1555{i:07d}"
        pair = [("slow", slow), ("fast", fast)]
        # Each goes first half the time: the second of a pair follows the first's
        # background work, which would otherwise fall on one side only.
        for name, client in pair if i % 2 else pair[::-1]:
            if pause:
                time.sleep(pause)  # pacing the client, not ordering events
            start = time.perf_counter()
            response = client.post("/otp", json={"phone": phone})
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                raise RuntimeError(f"/otp answered {response.status_code}: {response.text}")
            if i >= warmup:
                times[name].append(elapsed * 1000)
    return times["slow"], times["fast"]


def measure_phone_otp(
    mode: str,
    n: int,
    delay: float,
    warmup: int = 10,
    postgres: str | None = None,
    pause: float = 0.0,
    fast_delay: float = 0.0,
) -> tuple[list[float], list[float]]:
    """One round in ``mode``: latencies (ms) with the slow and the 0 ms provider.

    ``fast_delay`` gives the second provider a delay too (bench/phone_pairs.py's
    control pairs); the results are still (first service, second service).

    Each service has a fresh SQLite file, or with ``postgres`` a fresh
    database of its own on that server.

    Fails loudly unless both providers received every text: a mode that lost
    texts would look fast for the wrong reason.
    """
    total = warmup + n
    with (
        tempfile.TemporaryDirectory(prefix="apitask-bench-slow-") as slow_tmp,
        tempfile.TemporaryDirectory(prefix="apitask-bench-fast-") as fast_tmp,
        postgres_database(postgres) if postgres else contextlib.nullcontext() as slow_db,
        postgres_database(postgres) if postgres else contextlib.nullcontext() as fast_db,
        slow_twilio(delay) as (slow_url, slow_watch),
        slow_twilio(fast_delay) as (fast_url, fast_watch),
        # SMTP is not used by /otp {phone}; the port only has to be valid.
        service(Path(slow_tmp), mode, 9, slow_db, **phone_settings(slow_url)) as slow_api,
        service(Path(fast_tmp), mode, 9, fast_db, **phone_settings(fast_url)) as fast_api,
        httpx.Client(base_url=slow_api, timeout=60) as slow,
        httpx.Client(base_url=fast_api, timeout=60) as fast,
    ):
        slow_ms, fast_ms = otp_latencies(slow, fast, n, warmup, pause)
        for name, watcher in (("first", slow_watch), ("second", fast_watch)):
            got = wait_delivered(watcher, total, timeout=total * max(delay, fast_delay) + 120)
            if got != total:
                raise RuntimeError(f"{mode}: the {name} provider received {got} of {total} texts")
    return slow_ms, fast_ms

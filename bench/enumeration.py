"""Can an attacker tell by response time whether an address has an account?

A real ``apitask-auth serve`` process and a mail server that takes 300 ms per
mail (separate processes). For each endpoint, N requests for addresses with
an account ("known") and N for addresses without ("unknown"), interleaved,
one at a time, after 20 warm-up pairs that are not kept:

* ``/recover``: known = a confirmed user (mail sent), unknown = no user;
* ``/otp``, ``/magiclink``: known = a confirmed user (magic link), unknown =
  a new address (signed up: a password hashed, a confirmation mailed);
* ``/resend`` (``signup``): known = a user awaiting confirmation (mail
  sent), unknown = no user.

Per run: p50 and p99 of each group, their ratios (known / unknown) and the
two-sided Mann-Whitney U test's p-value (small p: distinguishable), against
the targets of issue 14: p > 0.01, p50 ratio in 0.95-1.05, p99 ratio in
0.8-1.25. Each mode runs with response-time matching on (the service's
default) for ``--runs`` runs, and once with it off: the difference of the
p50s is what matching costs each path.

``--background-load`` repeats every case with two more processes spinning
(one per core of this 2-core machine), started before and killed after.

Run: ``.venv/bin/python bench/enumeration.py`` [--requests 500] [--runs 5]
[--modes pool,outbox] [--endpoints recover,otp,magiclink,resend]
[--background-load] [--skip-quiet]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from scipy.stats import mannwhitneyu

from _common import RESULTS, Series, save
from _service import (
    admin_headers,
    percentile,
    recover_latencies,
    service,
    slow_smtp,
    wait_delivered,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _service import LineWatcher

ENDPOINTS = ("recover", "otp", "magiclink", "resend")
WARMUP = 20
# Targets of issue 14, for pool and outbox.
MAX_P = 0.01
P50_RANGE = (0.95, 1.05)
P99_RANGE = (0.8, 1.25)
# Enough workers and SMTP connections that 300 ms mails are delivered as fast
# as requests make them: a backlog would spread into the next run.
DELIVERY_ENV = {"GOTRUE_WORKER_COUNT_PER_CPU": "32", "GOTRUE_SMTP_MAX_POOL_SIZE": "64"}


@dataclass
class Run:
    """One run of one endpoint: latencies in ms per group."""

    endpoint: str
    mode: str
    load: str
    matching: bool
    known: list[float]
    unknown: list[float]
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        test = mannwhitneyu(self.known, self.unknown, alternative="two-sided")
        k50, u50 = percentile(self.known, 50), percentile(self.unknown, 50)
        k99, u99 = percentile(self.known, 99), percentile(self.unknown, 99)
        self.stats = {
            "known_p50": k50,
            "unknown_p50": u50,
            "known_p99": k99,
            "unknown_p99": u99,
            "ratio_p50": k50 / u50,
            "ratio_p99": k99 / u99,
            "mann_whitney_p": float(test.pvalue),
        }

    @property
    def passed(self) -> bool:
        s = self.stats
        return (
            s["mann_whitney_p"] > MAX_P
            and P50_RANGE[0] <= s["ratio_p50"] <= P50_RANGE[1]
            and P99_RANGE[0] <= s["ratio_p99"] <= P99_RANGE[1]
        )


def mails_per_run(endpoint: str, pairs: int) -> int:
    """Mails one run makes: every request of /otp and /magiclink mails; others known only."""
    return 2 * pairs if endpoint in ("otp", "magiclink") else pairs


async def _create_users(url: str, n: int, confirmed: bool) -> list[str]:
    """``n`` users through the admin API, a few at a time (each hashes a password)."""
    gate = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:

        async def one(i: int) -> str:
            email = f"user{i}-{secrets.token_hex(4)}@bench.example"
            body = {"email": email, "password": secrets.token_urlsafe(12)}
            async with gate:
                response = await client.post(
                    "/admin/users",
                    json=body | {"email_confirm": confirmed},
                    headers=admin_headers(),
                )
            response.raise_for_status()
            return email

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def stranger() -> str:
    return f"nobody-{secrets.token_hex(6)}@bench.example"


@contextlib.contextmanager
def background_load(on: bool, cores: int = 2, bound: float = 3600) -> Iterator[None]:
    """``cores`` processes spinning for at most ``bound`` seconds; killed on exit."""
    spin = f"import time\nend = time.monotonic() + {bound}\nwhile time.monotonic() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(cores if on else 0)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


class Bench:
    """One service process (one mode, matching on or off) and its users."""

    def __init__(self, client: httpx.Client, smtp: LineWatcher, users: dict[bool, list[str]]):
        self.client = client
        self.smtp = smtp
        self.users = users
        self.mails = 0

    def run(self, endpoint: str, pairs: int, mode: str, load: str, matching: bool) -> Run:
        # Confirmed users for /recover, /otp and /magiclink; unconfirmed ones for /resend.
        known = self.users[endpoint != "resend"][:pairs]
        unknown = [stranger() for _ in range(pairs)]
        extra = {"type": "signup"} if endpoint == "resend" else {}
        known_ms, unknown_ms = recover_latencies(
            self.client, known, unknown, WARMUP, endpoint, extra
        )
        self.mails += mails_per_run(endpoint, pairs)
        # Let the mail drain before the next run, so its backlog does not spread into it.
        delivered = wait_delivered(self.smtp, self.mails, timeout=120)
        if delivered != self.mails:
            raise RuntimeError(f"{mode}: the mail server received {delivered} of {self.mails}")
        return Run(endpoint, mode, load, matching, known_ms, unknown_ms)


def print_run(run: Run, index: str) -> None:
    s = run.stats
    verdict = "pass" if run.passed else "FAIL"
    if not run.matching:
        verdict = "(matching off)"
    print(
        f"{run.mode:<7} {run.load:<6} /{run.endpoint:<10} {index:>4} "
        f"{s['known_p50']:>7.2f} {s['unknown_p50']:>7.2f} {s['ratio_p50']:>5.2f}  "
        f"{s['known_p99']:>7.2f} {s['unknown_p99']:>7.2f} {s['ratio_p99']:>5.2f}  "
        f"{s['mann_whitney_p']:>7.3g}  {verdict}",
        flush=True,
    )


HEADER = (
    f"{'mode':<7} {'load':<6} {'endpoint':<11} {'run':>4} "
    f"{'kn p50':>7} {'un p50':>7} {'ratio':>5}  {'kn p99':>7} {'un p99':>7} {'ratio':>5}  "
    f"{'MW p':>7}  verdict   (ms)"
)


def bench_mode(args: argparse.Namespace, mode: str, loads: list[str]) -> list[Run]:
    """Every endpoint and load of one mode: matching on (``--runs`` runs), then off (one)."""
    endpoints = args.endpoints.split(",")
    pairs = dict.fromkeys(endpoints, args.requests + WARMUP)
    for e in ("otp", "magiclink"):
        if e in pairs and args.signup_requests:
            pairs[e] = args.signup_requests + WARMUP
    need = max(pairs.values())
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="apitask-bench-") as tmp,
        slow_smtp(args.delay) as (smtp_port, smtp),
    ):
        users: dict[bool, list[str]] = {}
        for matching in (True, False):
            # Both services share the database file (named after the mode) and its users.
            label = f"{mode}+match" if matching else mode
            with (
                service(Path(tmp), label, smtp_port, **DELIVERY_ENV) as url,
                httpx.Client(base_url=url, timeout=120) as client,
            ):
                if not users:
                    confirmed = any(e != "resend" for e in endpoints)
                    users[True] = asyncio.run(_create_users(url, need * confirmed, confirmed=True))
                    users[False] = (
                        asyncio.run(_create_users(url, pairs["resend"], confirmed=False))
                        if "resend" in pairs
                        else []
                    )
                bench = Bench(client, smtp, users)
                bench.mails = smtp.last_count("received")
                for load in loads:
                    with background_load(load == "loaded"):
                        for index in range(args.runs if matching else 1):
                            for endpoint in endpoints:
                                run = bench.run(endpoint, pairs[endpoint], mode, load, matching)
                                print_run(run, f"{index + 1}" if matching else "off")
                                runs.append(run)
    return runs


def cost_lines(runs: list[Run]) -> list[str]:
    """Added p50 per path: median over the matched runs less the unmatched run."""
    lines = []
    keys = sorted({(r.mode, r.load, r.endpoint) for r in runs})
    for mode, load, endpoint in keys:
        on = [r for r in runs if (r.mode, r.load, r.endpoint) == (mode, load, endpoint)]
        off = [r for r in on if not r.matching]
        matched = [r for r in on if r.matching]
        if not off or not matched:
            continue
        added = []
        for group in ("known", "unknown"):
            with_matching = sorted(r.stats[f"{group}_p50"] for r in matched)[len(matched) // 2]
            added.append(with_matching - off[0].stats[f"{group}_p50"])
        passed = sum(r.passed for r in matched)
        lines.append(
            f"{mode:<7} {load:<6} /{endpoint:<10} {passed}/{len(matched)} runs pass; "
            f"added p50: known {added[0]:+.2f} ms, unknown {added[1]:+.2f} ms "
            f"(off: {off[0].stats['known_p50']:.2f} / {off[0].stats['unknown_p50']:.2f} ms)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500, help="requests per group and run")
    parser.add_argument(
        "--signup-requests",
        type=int,
        default=0,
        help="requests per group for /otp and /magiclink (default: --requests)",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs with matching on, per case")
    parser.add_argument("--delay", type=float, default=0.3, help="seconds per mail")
    parser.add_argument("--modes", default="pool,outbox")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    parser.add_argument(
        "--background-load",
        action="store_true",
        help="also run every case with two spinning processes keeping both cores busy",
    )
    parser.add_argument("--skip-quiet", action="store_true", help="only the loaded runs")
    args = parser.parse_args()
    loads = [] if args.skip_quiet else ["quiet"]
    if args.background_load:
        loads.append("loaded")
    print(HEADER, flush=True)
    runs = [run for mode in args.modes.split(",") for run in bench_mode(args, mode, loads)]
    matched = [r for r in runs if r.matching]
    print(f"\n{sum(r.passed for r in matched)}/{len(matched)} matched runs meet every target")
    summary = cost_lines(runs)
    print("\n".join(summary))
    name = "enumeration-" + args.endpoints.replace(",", "-")
    (RESULTS / f"{name}.txt").write_text("\n".join([HEADER, *summary]) + "\n")
    rows = [
        Series(
            f"{r.mode} {r.load} /{r.endpoint} {'match' if r.matching else 'off'} {key}",
            "ms" if "p" in key[-3:] else "",
            [value],
        )
        for r in runs
        for key, value in r.stats.items()
    ]
    print(f"results: {save(name, rows, requests=args.requests, runs=args.runs, loads=loads)}")


if __name__ == "__main__":
    main()

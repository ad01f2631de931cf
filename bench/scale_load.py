"""One and two ``serve`` processes, and latency against offered load (PostgreSQL).

Completes ``bench/scale.py`` (same seeding, same service settings: ``outbox``
delivery, response-time matching off, autoconfirm off) on one fresh
PostgreSQL database seeded with ``--users`` confirmed users:

* **processes**: ``--clients`` concurrent clients signing up fresh addresses
  for ``--seconds`` against one ``apitask-auth serve`` process, then against
  two (each on its own port, sharing the database; client ``k`` talks to
  process ``k mod 2``, as a load balancer would spread them), alternated
  ``--rounds`` times so the shared machine's drift falls on both. Printed
  next to the two/one ratio, measured in the same run: the server's CPU use
  (CPU seconds / wall seconds, in cores) and the bcrypt floor (hashes/s at
  the service's cost, one hashing process per core: no server hashing each
  new password signs up faster). ``floor / one process`` is what a second
  process can add at most on this machine. ``--modes`` repeats it per
  delivery mode (``outbox,pool``).
* **load**: an open-loop generator against one process: requests sent at
  exponentially spaced times (Poisson arrivals) at each offered rate of
  ``--recover-rates`` (``POST /recover`` of a seeded address, each asked
  once) and ``--signup-rates`` (fresh addresses), for ``--load-seconds``
  each. Latency counts from the moment a request was due, not from when it
  was sent, so a generator that falls behind does not hide the queue
  (coordinated omission). p50, p99 and the rate achieved per offered rate.
* **profile**: ``scale.py``'s where-the-time-goes run of ``--profile-n``
  sequential sign-ups, with response-time matching off and on.

Writes bench/results/<--out>.json and docs/img/scale-load.png.

Run: ``.venv/bin/python bench/scale_load.py --postgres URL [--users 10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bcrypt
import httpx

from _common import RESULTS, load_average
from _service import HERE, percentile, postgres_database, service_process, slow_smtp
from apitask_auth.accounts.security import BCRYPT_COST
from scale import (
    DOMAIN,
    PASSWORD,
    SERVICE_ENV,
    TOP_STEPS,
    CpuMeter,
    _signup_body,
    bcrypt_floor,
    breakdown_rest,
    profile,
    run_migrate,
    save_figure,
    seed_postgres,
    seeded_email,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

PLOT = HERE.parent / "docs" / "img" / "scale-load.png"


@contextlib.contextmanager
def servers(tmp: Path, mode: str, database_url: str, count: int) -> Iterator[list[tuple[str, int]]]:
    """``count`` serve processes on one database: [(base URL, pid)]."""
    with contextlib.ExitStack() as stack:
        smtp_port, _ = stack.enter_context(slow_smtp(0.0))
        found = []
        for _ in range(count):
            url, proc = stack.enter_context(
                service_process(tmp, mode, smtp_port, database_url, extra=SERVICE_ENV)
            )
            found.append((url, proc.pid))
        yield found


# --- processes: closed loop ---------------------------------------------------------------


async def closed_loop(urls: list[str], clients: int, seconds: float, tag: str) -> dict[str, Any]:
    """``clients`` loops signing up fresh addresses, client ``k`` on ``urls[k % len]``."""
    latencies: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    deadline = t0 + seconds
    last = t0
    pools = [
        httpx.AsyncClient(base_url=u, timeout=300, limits=httpx.Limits(max_connections=clients))
        for u in urls
    ]

    async def client_loop(k: int) -> None:
        nonlocal last
        client = pools[k % len(pools)]
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            email = f"p-{tag}-{k}-{i}-{secrets.token_hex(3)}@{DOMAIN}"
            start = time.perf_counter()
            response = await client.post("/signup", json=_signup_body(email))
            last = time.perf_counter()
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:200]}")
                continue
            latencies.append((last - start) * 1000)

    try:
        await asyncio.gather(*(client_loop(k) for k in range(clients)))
    finally:
        for pool in pools:
            await pool.aclose()
    elapsed = last - t0
    return {
        "signups": len(latencies),
        "errors": errors[:5],
        "error_count": len(errors),
        "seconds": elapsed,
        "per_s": len(latencies) / elapsed,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
    }


def one_run(
    args: argparse.Namespace, tmp: Path, mode: str, database_url: str, count: int, tag: str
) -> dict[str, Any]:
    with servers(tmp, mode, database_url, count) as found:
        urls = [u for u, _ in found]
        # Warm each process (first bcrypt, connections) outside the window.
        asyncio.run(closed_loop(urls, 2 * count, 1.0, f"w{tag}"))
        meters = [
            CpuMeter(pid, database_url if i == 0 else None) for i, (_, pid) in enumerate(found)
        ]
        for meter in meters:
            meter.start()
        result = asyncio.run(closed_loop(urls, args.clients, args.seconds, tag))
        cpus = [meter.stop() for meter in meters]
    wall = cpus[0]["seconds"]
    result.update(
        {
            "processes": count,
            "mode": mode,
            "server_cores": sum(c["server_cpu"] for c in cpus) / wall,
            "server_cores_each": [c["server_cpu"] / wall for c in cpus],
            "server_cpu_ms_per_signup": sum(c["server_cpu"] for c in cpus)
            / result["signups"]
            * 1000,
            "postgres_backends_cores": cpus[0]["postgres_backends_cpu"] / wall,
            "machine_cores": cpus[0]["machine_cpu"] / wall,
            "load": load_average(),
        }
    )
    print(
        f"{mode} {count} process(es): {result['per_s']:.1f} sign-ups/s, p50 {result['p50']:.0f} "
        f"ms, server {result['server_cores']:.2f} cores, machine {result['machine_cores']:.2f}, "
        f"load {result['load']}",
        flush=True,
    )
    return result


def processes(args: argparse.Namespace, tmp: Path, database_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in args.modes.split(","):
        runs: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}
        floors = []
        for r in range(args.rounds):
            floors.append(bcrypt_floor(args.floor_seconds))
            for count in (1, 2) if r % 2 == 0 else (2, 1):
                runs[str(count)].append(
                    one_run(args, tmp, mode, database_url, count, f"{mode[:2]}{r}{count}")
                )
        one = sum(x["per_s"] for x in runs["1"]) / len(runs["1"])
        two = sum(x["per_s"] for x in runs["2"]) / len(runs["2"])
        floor = sum(f["all_cores_per_s"] for f in floors) / len(floors)
        idle_floor = sum(f["idle_floor_per_s"] for f in floors) / len(floors)
        out[mode] = {
            "runs": runs,
            "floors": floors,
            "one_per_s": one,
            "two_per_s": two,
            "two_over_one": two / one,
            "floor_per_s": floor,
            "idle_floor_per_s": idle_floor,
            "floor_over_one": floor / one,
            "one_server_cores": sum(x["server_cores"] for x in runs["1"]) / len(runs["1"]),
            "two_server_cores": sum(x["server_cores"] for x in runs["2"]) / len(runs["2"]),
        }
    return out


# --- load: open loop -----------------------------------------------------------------------


async def open_loop(
    url: str, rate: float, seconds: float, make: Iterator[tuple[str, dict[str, str]]]
) -> dict[str, Any]:
    """Requests due at Poisson-spaced times at ``rate``/s for ``seconds``; latency from due."""
    rng = random.Random(int(rate * 1000))
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def one(due: float, path: str, body: dict[str, str]) -> None:
            try:
                response = await client.post(path, json=body)
            except httpx.HTTPError as error:  # past its limit the server drops connections
                errors.append(f"{type(error).__name__} {error}")
                return
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:200]}")
                return
            latencies.append((time.perf_counter() - due) * 1000)

        t0 = time.perf_counter()
        due = t0
        tasks = []
        while True:
            due += rng.expovariate(rate)
            if due - t0 > seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            path, body = next(make)
            tasks.append(asyncio.create_task(one(due, path, body)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return {
        "offered_per_s": rate,
        "sent": len(tasks),
        "answered": len(latencies),
        "achieved_per_s": len(latencies) / elapsed,
        "error_count": len(errors),
        "errors": errors[:5],
        "p50": percentile(latencies, 50) if latencies else None,
        "p99": percentile(latencies, 99) if latencies else None,
    }


def recover_requests(users: int) -> Iterator[tuple[str, dict[str, str]]]:
    """/recover of each seeded user once, in random order (a second would meet the
    per-user interval)."""
    order = list(range(users))
    random.Random(7).shuffle(order)
    for i in order:
        yield "/recover", {"email": seeded_email(i)}


def signup_requests(tag: str) -> Iterator[tuple[str, dict[str, str]]]:
    i = 0
    while True:
        i += 1
        yield "/signup", _signup_body(f"o-{tag}-{i}-{secrets.token_hex(3)}@{DOMAIN}")


def load_curves(args: argparse.Namespace, tmp: Path, database_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {"recover": [], "signup": []}
    recovers = recover_requests(args.users)
    with servers(tmp, "outbox", database_url, 1) as found:
        url = found[0][0]
        asyncio.run(open_loop(url, 20, 1.0, recovers))  # warm-up, not kept
        for kind, rates, make in (
            ("recover", args.recover_rates, recovers),
            ("signup", args.signup_rates, signup_requests("load")),
        ):
            for rate in (float(r) for r in rates.split(",")):
                result = asyncio.run(open_loop(url, rate, args.load_seconds, make))
                result["load"] = load_average()
                out[kind].append(result)
                print(
                    f"open loop {kind} offered {rate:g}/s: achieved "
                    f"{result['achieved_per_s']:.1f}/s p50 {result['p50']:.1f} ms "
                    f"p99 {result['p99']:.1f} ms errors {result['error_count']} "
                    f"load {result['load']}",
                    flush=True,
                )
    return out


# --- report ------------------------------------------------------------------------------------


def cpu_ms(runs: list[dict[str, Any]]) -> str:
    values = [r["server_cpu_ms_per_signup"] for r in runs]
    return f"{min(values):.0f}-{max(values):.0f}"


def report(results: dict[str, Any]) -> str:
    lines = [f"PostgreSQL, {results['users']:,} users, {results['clients']} clients", ""]
    for mode, p in results.get("processes", {}).items():
        lines += [
            f"{mode}: one process {p['one_per_s']:.1f} sign-ups/s using "
            f"{p['one_server_cores']:.2f} cores; two processes {p['two_per_s']:.1f}/s using "
            f"{p['two_server_cores']:.2f} cores: two/one {p['two_over_one']:.2f}x",
            f"  bcrypt floor, same run: {p['idle_floor_per_s']:.1f}/s by CPU time (cores / "
            f"one hash's CPU), {p['floor_per_s']:.1f}/s by wall clock (2 hashing processes "
            f"among the neighbours); the most a second process can add is the CPU-time "
            f"floor / one process on a quiet machine (docs/benchmarks.md)",
            f"  server CPU per sign-up: one process {cpu_ms(p['runs']['1'])}, "
            f"two {cpu_ms(p['runs']['2'])} ms",
        ]
        for count in ("1", "2"):
            for r in p["runs"][count]:
                lines.append(
                    f"    {count} process(es): {r['per_s']:.1f}/s p50 {r['p50']:.0f} ms "
                    f"p99 {r['p99']:.0f} ms, server cores {r['server_cores']:.2f} "
                    f"({', '.join(f'{c:.2f}' for c in r['server_cores_each'])}), "
                    f"PG {r['postgres_backends_cores']:.2f}, machine {r['machine_cores']:.2f}, "
                    f"errors {r['error_count']}, load {r['load']}"
                )
    for kind, curve in results.get("load", {}).items():
        lines += ["", f"open loop, POST /{kind}: offered/s, achieved/s, p50 ms, p99 ms"]
        lines += [
            f"  {c['offered_per_s']:6g} {c['achieved_per_s']:8.1f} {c['p50']:9.1f} "
            f"{c['p99']:9.1f}  errors {c['error_count']}"
            for c in curve
        ]
    for name, p in results.get("profiles", {}).items():
        lines += ["", f"sign-up profile, {name}: client p50 {p['client_p50_ms']:.1f} ms, ms each"]
        lines += [
            f"  {step:<52} {v['ms_per_signup']:7.2f}  ({v['calls_per_signup']:.1f} calls)"
            for step, v in p["steps"].items()
        ]
        lines += [f"  {step:<52} {ms:7.2f}" for step, ms in breakdown_rest(p).items()]
        lines += [f"  {step:<52} {ms:7.2f}" for step, ms in middleware_split(p).items()]
    return "\n".join(lines)


def middleware_split(p: dict[str, Any]) -> dict[str, float]:
    """The app's rest split at the router: the middleware stack's own time, and the
    router's beyond the timed steps (routing, validation, begin). The matching's wait
    runs inside the router's time: it happens in the ``send`` of the response start,
    which the endpoint's response calls."""
    steps = p["steps"]

    def ms(name: str) -> float:
        return float(steps[name]["ms_per_signup"]) if name in steps else 0.0

    router = ms("router (routing, validation, endpoint)")
    timed = sum(ms(name) for name in TOP_STEPS)
    wait = ms("response-time matching: wait for the deadline")
    return {
        "= middleware stack's own (whole - router)": ms("server: whole request (ASGI app)")
        - router,
        "= router beyond the timed steps and the wait": router - timed - wait,
    }


def plot(results: dict[str, Any]) -> None:
    """p50 and p99 against offered rate, one panel per request; achieved rate on a twin axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = results["load"]
    figure, axes = plt.subplots(1, len(curves), figsize=(5.6 * len(curves), 4.2), squeeze=False)
    for axis, (kind, curve) in zip(axes[0], curves.items(), strict=True):
        offered = [c["offered_per_s"] for c in curve]
        for q, style in (("p50", "-o"), ("p99", "--^")):
            axis.plot(offered, [c[q] for c in curve], style, label=f"latency {q}")
        axis.set_yscale("log")
        axis.set_xlabel("requests/s offered (open loop, Poisson)")
        axis.set_ylabel("latency from due time, ms (log)")
        axis.set_title(f"POST /{kind}, PostgreSQL, {results['users']:,} users, 1 process")
        axis.grid(True, which="both", alpha=0.3)
        twin = axis.twinx()
        twin.plot(
            offered, [c["achieved_per_s"] for c in curve], ":s", color="grey", label="achieved/s"
        )
        twin.set_ylabel("requests/s achieved")
        twin.set_ylim(bottom=0)
        handles = axis.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        axis.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
    save_figure(figure, PLOT)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", metavar="URL", help="PostgreSQL server (not for --replot)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=12.0, help="per closed-loop window")
    parser.add_argument("--rounds", type=int, default=2, help="one/two alternations per mode")
    parser.add_argument("--modes", default="outbox,pool")
    parser.add_argument("--floor-seconds", type=float, default=3.0)
    parser.add_argument("--recover-rates", default="10,25,50,100,150,200")
    parser.add_argument("--signup-rates", default="5,10,15,20,25,30")
    parser.add_argument("--load-seconds", type=float, default=8.0)
    parser.add_argument("--profile-n", type=int, default=100)
    parser.add_argument("--parts", default="processes,load,profile")
    parser.add_argument("--out", default="scale-load")
    parser.add_argument(
        "--replot", action="store_true", help="only print the report and redraw from the results"
    )
    args = parser.parse_args(argv)
    path = RESULTS / f"{args.out}.json"
    if args.replot:
        saved = json.loads(path.read_text())
        print(report(saved))
        if "load" in saved:
            plot(saved)
        return
    if not args.postgres:
        parser.error("--postgres URL is needed")
    parts = args.parts.split(",")
    results: dict[str, Any] = {
        "users": args.users,
        "clients": args.clients,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_start": load_average(),
        "bcrypt_cost": BCRYPT_COST,
    }
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
    with (
        tempfile.TemporaryDirectory(prefix="apitask-scale-load-") as tmp_name,
        postgres_database(args.postgres) as database_url,
    ):
        tmp = Path(tmp_name)
        run_migrate(tmp, database_url)
        asyncio.run(seed_postgres(database_url, 0, args.users, hashed))
        if "processes" in parts:
            results["processes"] = processes(args, tmp, database_url)
            path.write_text(json.dumps(results, indent=1))
        if "load" in parts:
            results["load"] = load_curves(args, tmp, database_url)
            path.write_text(json.dumps(results, indent=1))
        if "profile" in parts:
            results["profiles"] = {}
            for mode in ("outbox", "outbox+match"):
                ns = argparse.Namespace(mode=mode, profile_n=args.profile_n)
                results["profiles"][mode] = profile(ns, tmp, database_url, f"pr{mode[-3:]}")
                path.write_text(json.dumps(results, indent=1))
    results["load_end"] = load_average()
    path.write_text(json.dumps(results, indent=1))
    print(report(results))
    print(f"results: {path}")
    if "load" in results:
        plot(results)


if __name__ == "__main__":
    main()

"""Sign-up and ``POST /recover`` as the users table grows: 10k, 100k, 1M users.

For each database (SQLite, and PostgreSQL with ``--postgres URL``): a fresh
database migrated by the service's own ``apitask-auth migrate``, seeded with
10k confirmed users (each with its e-mail identity, as the service creates
them), then grown to 100k and 1M in the same database, without starting
over. Seeding writes rows directly (PostgreSQL: ``COPY``; SQLite:
``executemany`` in one transaction, the server stopped) with one bcrypt
hash computed once and reused: hashing a million passwords is not what is
measured. After seeding PostgreSQL runs ``VACUUM ANALYZE``, what autovacuum
does soon after such a load (a bulk insert triggers it), so that work does
not overlap the measurement; SQLite gets none (the service never runs one).

At each size, against a real ``apitask-auth serve`` (uvicorn, ``outbox``
delivery, response-time matching off, autoconfirm off as in the default
deployment, so a sign-up queues a confirmation mail) and a mail server that
answers at once:

* ``--n`` sequential pairs: a sign-up of a fresh address, then ``/recover``
  of a seeded address picked at random (a mail is queued for it); the first
  20 pairs warm up and are not kept. p50 and p99 of each, and their ratio to
  the first size's in the same run.
* ``--clients`` concurrent clients signing up fresh addresses for
  ``--seconds`` (or ``--max-signups``): sign-ups/s, its ratio to the first
  size's, and to the floor below; CPU seconds per sign-up of the server
  process, of this database's PostgreSQL backends, and of the whole machine.

The floor, measured in the same run: one bcrypt hash at the service's cost
(10, GoTrue's) in as many processes as the machine has cores, for a few
seconds: no server that hashes each new password can sign up faster.

``--profile`` adds, at the largest size, a run of sequential sign-ups against the
same server started through ``bench/_profiled_serve.py``, which times the
endpoint's steps inside the process: where each millisecond of a sign-up
goes (bcrypt, look-up, inserts, allowance, token, mail hand-off, audit,
response body, commit, JSON, and the rest: HTTP, routing, validation).

Writes bench/results/scale.json and, with ``--plot``, docs/img/scale.png
(from the JSON: ``--replot`` redraws without measuring).

Run: ``.venv/bin/python bench/scale.py [--postgres URL] [--databases sqlite,postgresql]
[--sizes 10000,100000,1000000] [--n 300] [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import bcrypt
import httpx
from sqlalchemy.dialects.sqlite import pysqlite

from _common import RESULTS, load_average
from _profiled_serve import HEADER as PROFILED
from _service import HERE, percentile, postgres_database, service_process, slow_smtp
from apitask_auth.accounts.security import BCRYPT_COST
from apitask_auth.storage.tables import identities, users

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from matplotlib.figure import Figure
    from sqlalchemy import Table

PLOT = HERE.parent / "docs" / "img" / "scale.png"
DOMAIN = "scale.example"
PASSWORD = "Scale-bench-password-1"
WARMUP = 20
CHUNK = 50_000
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PROFILE_HEADER = {PROFILED: "1"}
# The audience Supabase deployments set (the service's default is GoTrue's empty one);
# the seeded rows carry it. Autoconfirm stays off, the default.
SERVICE_ENV = {"GOTRUE_JWT_AUD": "authenticated"}


def seeded_email(i: int) -> str:
    return f"user{i}@{DOMAIN}"


# --- seeding ---------------------------------------------------------------------------


def _user_row(user_id: str, email: str, hashed: str, at: datetime) -> dict[str, Any]:
    """A confirmed user as ``create_user`` + confirmation leave it."""
    return {
        "id": user_id,
        "aud": "authenticated",
        "role": "authenticated",
        "email": email,
        "encrypted_password": hashed,
        "email_confirmed_at": at,
        "email_change_confirm_status": 0,
        "raw_app_meta_data": {"provider": "email", "providers": ["email"]},
        "raw_user_meta_data": {},
        "created_at": at,
        "updated_at": at,
        "is_anonymous": False,
        "is_sso_user": False,
    }


def _identity_row(user_id: str, email: str, at: datetime) -> dict[str, Any]:
    """Its e-mail identity, as ``create_email_identity`` writes it (verified)."""
    return {
        "id": str(uuid.uuid4()),
        "provider_id": user_id,
        "user_id": user_id,
        "identity_data": {
            "sub": user_id,
            "email": email,
            "email_verified": True,
            "phone_verified": False,
        },
        "provider": "email",
        "email": email,
        "created_at": at,
        "updated_at": at,
    }


def _chunks(start: int, stop: int) -> Iterator[range]:
    for first in range(start, stop, CHUNK):
        yield range(first, min(stop, first + CHUNK))


def _rows(
    indexes: range, hashed: str, at: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    user_rows, identity_rows = [], []
    for i in indexes:
        user_id = str(uuid.uuid4())
        user_rows.append(_user_row(user_id, seeded_email(i), hashed, at))
        identity_rows.append(_identity_row(user_id, seeded_email(i), at))
    return user_rows, identity_rows


async def seed_postgres(url: str, start: int, stop: int, hashed: str) -> None:
    """COPY users ``start`` to ``stop`` and their identities, then VACUUM ANALYZE."""
    conn = await asyncpg.connect(url)
    try:
        at = datetime.now(UTC)
        for indexes in _chunks(start, stop):
            user_rows, identity_rows = _rows(indexes, hashed, at)
            for table, rows in ((users, user_rows), (identities, identity_rows)):
                columns = list(rows[0])
                await conn.copy_records_to_table(
                    table.name,
                    columns=columns,
                    # asyncpg's json codec takes text; timestamps stay datetimes.
                    records=[
                        tuple(json.dumps(v) if isinstance(v, dict) else v for v in row.values())
                        for row in rows
                    ],
                )
        # One statement each: VACUUM cannot run in the implicit transaction of a batch.
        for table_name in ("users", "identities"):
            await conn.execute(f"VACUUM ANALYZE {table_name}")
    finally:
        await conn.close()


def _sqlite_values(table: Table, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows as SQLAlchemy would store them in SQLite (its types' own bind processing)."""
    dialect = pysqlite.dialect()
    columns = list(rows[0])
    processors = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    ]
    return [
        tuple(p(v) if p else v for p, v in zip(processors, row.values(), strict=True))
        for row in rows
    ]


def seed_sqlite(path: Path, start: int, stop: int, hashed: str) -> None:
    """INSERT users ``start`` to ``stop`` and their identities, one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # Seeding is not measured: a big page cache (the random UUID keys touch pages
        # all over the indexes) and no fsync; the service's connections set their own.
        conn.execute("PRAGMA cache_size = -400000")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        at = datetime.now(UTC)
        for indexes in _chunks(start, stop):
            user_rows, identity_rows = _rows(indexes, hashed, at)
            for table, rows in ((users, user_rows), (identities, identity_rows)):
                names = list(rows[0])
                conn.executemany(
                    f"INSERT INTO {table.name} ({', '.join(names)}) "
                    f"VALUES ({', '.join('?' * len(names))})",
                    _sqlite_values(table, rows),
                )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def _count_users(url: str | None, sqlite_path: Path) -> int:
    if url is None:
        with contextlib.closing(sqlite3.connect(sqlite_path)) as conn:
            return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM users"))
    finally:
        await conn.close()


# --- CPU time ----------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores, all processes)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLOCK_TICK


async def backend_pids(url: str) -> list[int]:
    """PostgreSQL backends connected to ``url``'s database (other than this query's)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [int(row["pid"]) for row in rows]
    finally:
        await conn.close()


class CpuMeter:
    """CPU seconds of the server process, its database's backends and the machine."""

    def __init__(self, server_pid: int, url: str | None) -> None:
        self.server_pid = server_pid
        self.url = url

    def _backends(self) -> dict[int, float]:
        if self.url is None:
            return {}
        return {pid: process_cpu(pid) for pid in asyncio.run(backend_pids(self.url))}

    def start(self) -> None:
        self._start = (process_cpu(self.server_pid), self._backends(), machine_busy())
        self._t0 = time.perf_counter()

    def stop(self) -> dict[str, float]:
        server0, backends0, busy0 = self._start
        backends1 = self._backends()
        # Backends that began during the window count from zero; those that ended are lost
        # (PostgreSQL's parallel workers among them: the machine's figure still has them).
        backend_cpu = sum(cpu - backends0.get(pid, 0.0) for pid, cpu in backends1.items())
        return {
            "seconds": time.perf_counter() - self._t0,
            "server_cpu": process_cpu(self.server_pid) - server0,
            "postgres_backends_cpu": backend_cpu,
            "machine_cpu": machine_busy() - busy0,
        }


# --- the floor ------------------------------------------------------------------------------


def _hash_for(seconds: float) -> int:
    deadline = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < deadline:
        bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_COST))
        count += 1
    return count


def bcrypt_floor(seconds: float) -> dict[str, float]:
    """Hashes/s at the service's cost: one process, and one per core at once.

    Also the CPU time of one hash, which the machine's other load does not change
    (wall-clock rates do, on a shared machine): ``cores / one_hash_cpu`` is the
    floor an idle machine would give.
    """
    cores = os.cpu_count() or 1
    cpu = time.process_time()
    count = _hash_for(seconds)
    cpu = time.process_time() - cpu
    single = count / seconds
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        counts = pool.map(_hash_for, [seconds] * cores)
    return {
        "cores": cores,
        "cost": BCRYPT_COST,
        "one_process_per_s": single,
        "one_hash_ms": 1000 / single,
        "one_hash_cpu_ms": cpu * 1000 / count,
        "idle_floor_per_s": cores * count / cpu,
        "all_cores_per_s": sum(counts) / seconds,
    }


# --- requests -------------------------------------------------------------------------------


def _signup_body(email: str) -> dict[str, str]:
    return {"email": email, "password": PASSWORD}


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{what} answered {response.status_code}: {response.text[:300]}")


def sequential(
    client: httpx.Client, n: int, size: int, tag: str, used: set[int]
) -> dict[str, list[float]]:
    """``n`` kept pairs of sign-up (fresh address) then /recover (seeded address), ms.

    Each /recover is for a seeded user picked at random that no earlier one asked
    for (``used``): a second request within a minute would meet the per-user interval.
    """
    times: dict[str, list[float]] = {"signup": [], "recover": []}
    rng = random.Random(size)
    picks: list[int] = []
    while len(picks) < n + WARMUP:
        pick = rng.randrange(size)
        if pick not in used:
            used.add(pick)
            picks.append(pick)
    for i, pick in enumerate(picks):
        fresh = f"new-{tag}-{i}-{secrets.token_hex(3)}@{DOMAIN}"
        start = time.perf_counter()
        response = client.post("/signup", json=_signup_body(fresh))
        signup_ms = (time.perf_counter() - start) * 1000
        _check(response, "/signup")
        start = time.perf_counter()
        response = client.post("/recover", json={"email": seeded_email(pick)})
        recover_ms = (time.perf_counter() - start) * 1000
        _check(response, "/recover")
        if i >= WARMUP:
            times["signup"].append(signup_ms)
            times["recover"].append(recover_ms)
    return times


async def concurrent(
    url: str, clients: int, seconds: float, limit: int, tag: str
) -> tuple[int, float, list[float], list[str]]:
    """``clients`` loops signing up fresh addresses until ``seconds`` or ``limit`` sign-ups.

    Returns the sign-ups, the seconds until the last one answered, their latencies (ms),
    and the answers other than 200.
    """
    started = 0
    latencies: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    deadline = t0 + seconds
    last = t0

    async def client_loop(client: httpx.AsyncClient, k: int) -> None:
        nonlocal started, last
        while time.perf_counter() < deadline and started < limit:
            started += 1
            email = f"con-{tag}-{k}-{started}-{secrets.token_hex(3)}@{DOMAIN}"
            start = time.perf_counter()
            response = await client.post("/signup", json=_signup_body(email))
            last = time.perf_counter()
            if response.status_code != 200:  # counted and kept, not a sign-up
                errors.append(f"{response.status_code} {response.text[:200]}")
                continue
            latencies.append((last - start) * 1000)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        await asyncio.gather(*(client_loop(client, k) for k in range(clients)))
    return len(latencies), last - t0, latencies, errors


def can_sign_in(client: httpx.Client, size: int) -> None:
    """The last seeded user signs in with the seeded password: the rows read back whole."""
    response = client.post(
        "/token",
        params={"grant_type": "password"},
        json={"email": seeded_email(size - 1), "password": PASSWORD},
    )
    _check(response, "sign-in of a seeded user")


# --- one database ---------------------------------------------------------------------------


def run_migrate(tmp: Path, database_url: str) -> None:
    """The service's own ``apitask-auth migrate`` (the schema is exactly its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOTRUE_")}
    env["DATABASE_URL"] = database_url
    subprocess.run(
        [sys.executable, "-m", "apitask_auth.cli", "migrate", "--dev"],
        cwd=tmp,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )


def measure_size(
    args: argparse.Namespace,
    tmp: Path,
    database_url: str,
    postgres_url: str | None,
    size: int,
    tag: str,
    used: set[int],
) -> dict[str, Any]:
    result: dict[str, Any] = {"size": size, "load_start": load_average()}
    log: list[str] = []
    with (
        slow_smtp(0.0) as (smtp_port, _smtp),
        service_process(tmp, args.mode, smtp_port, database_url, extra=SERVICE_ENV, log=log) as (
            url,
            proc,
        ),
        httpx.Client(base_url=url, timeout=300) as client,
    ):
        can_sign_in(client, size)
        meter = CpuMeter(proc.pid, postgres_url)
        meter.start()
        times = sequential(client, args.n, size, tag, used)
        result["sequential_cpu"] = meter.stop()
        for kind, values in times.items():
            result[kind] = {
                "p50": percentile(values, 50),
                "p99": percentile(values, 99),
                "values": [round(v, 3) for v in values],
            }
        # The floor again, now: the machine is shared, so its load drifts between sizes.
        result["floor"] = bcrypt_floor(args.floor_seconds)
        meter.start()
        count, elapsed, latencies, errors = asyncio.run(
            concurrent(url, args.clients, args.seconds, args.max_signups, tag)
        )
        cpu = meter.stop()
        result["concurrent"] = {
            "clients": args.clients,
            "signups": count,
            "errors": errors,
            "seconds": elapsed,
            "per_s": count / elapsed,
            "vs_floor_now": count / elapsed / result["floor"]["all_cores_per_s"],
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "server_cpu_ms_per_signup": cpu["server_cpu"] / count * 1000,
            "server_cores": cpu["server_cpu"] / cpu["seconds"],
            "postgres_backends_cpu_ms_per_signup": cpu["postgres_backends_cpu"] / count * 1000,
            "postgres_backends_cores": cpu["postgres_backends_cpu"] / cpu["seconds"],
            "machine_cores": cpu["machine_cpu"] / cpu["seconds"],
        }
    if result["concurrent"]["errors"]:
        # The server's own account of what failed (its stderr, from the first traceback).
        first = next((i for i, line in enumerate(log) if "Traceback" in line), len(log))
        result["server_log"] = log[max(0, first - 5) : first + 80]
        print("\n".join(result["server_log"]), flush=True)
    if args.profile and size == max(int(s) for s in args.sizes.split(",")):
        result["profile"] = profile(args, tmp, database_url, tag)
    result["load_end"] = load_average()
    return result


def profile(args: argparse.Namespace, tmp: Path, database_url: str, tag: str) -> dict[str, Any]:
    """Sequential sign-ups against the profiled server: where each millisecond goes."""
    out = tmp / "profile.json"
    command = [sys.executable, str(HERE / "_profiled_serve.py"), str(out), "serve", "--dev"]
    with (
        slow_smtp(0.0) as (smtp_port, _smtp),
        service_process(
            tmp, args.mode, smtp_port, database_url, command=command, extra=SERVICE_ENV
        ) as (url, _),
        httpx.Client(base_url=url, timeout=300) as client,
    ):
        for i in range(WARMUP):  # not timed: no header
            _check(client.post("/signup", json=_signup_body(f"warm-{tag}-{i}@{DOMAIN}")), "warm")
        client_ms = []
        for i in range(args.profile_n):
            email = f"prof-{tag}-{i}-{secrets.token_hex(3)}@{DOMAIN}"
            start = time.perf_counter()
            response = client.post("/signup", json=_signup_body(email), headers=PROFILE_HEADER)
            client_ms.append((time.perf_counter() - start) * 1000)
            _check(response, "/signup")
    # The server writes its totals when it exits, at the end of the ``with``.
    totals: dict[str, list[float]] = json.loads(out.read_text())
    calls = args.profile_n
    steps = {
        name: {"ms_per_signup": total * 1000 / calls, "calls_per_signup": count / calls}
        for name, (total, count) in totals.items()
    }
    return {
        "signups": calls,
        "client_p50_ms": percentile(client_ms, 50),
        "client_mean_ms": sum(client_ms) / len(client_ms),
        "steps": steps,
    }


def measure_database(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
    with (
        tempfile.TemporaryDirectory(prefix="apitask-scale-") as tmp_name,
        postgres_database(args.postgres)
        if kind == "postgresql"
        else contextlib.nullcontext() as pg,
    ):
        tmp = Path(tmp_name)
        sqlite_path = tmp / "auth.db"
        database_url = pg or f"sqlite:///{sqlite_path}"
        run_migrate(tmp, database_url)
        per_size: list[dict[str, Any]] = []
        seeded = 0
        used: set[int] = set()  # seeded users /recover asked for
        for size in sizes:
            start = time.perf_counter()
            if kind == "postgresql":
                assert pg is not None
                asyncio.run(seed_postgres(pg, seeded, size, hashed))
            else:
                seed_sqlite(sqlite_path, seeded, size, hashed)
            seed_seconds = time.perf_counter() - start
            seeded = size
            print(f"{kind}: seeded to {size} users in {seed_seconds:.1f} s", flush=True)
            result = measure_size(args, tmp, database_url, pg, size, f"{kind[:2]}{size}", used)
            result["seed_seconds"] = seed_seconds
            result["users_after"] = asyncio.run(_count_users(pg, sqlite_path))
            per_size.append(result)
            print(summary_line(kind, result, per_size[0]), flush=True)
    return {"database": kind, "sizes": per_size}


# --- report -----------------------------------------------------------------------------------


def summary_line(kind: str, r: dict[str, Any], base: dict[str, Any]) -> str:
    c = r["concurrent"]
    return (
        f"{kind:<10} {r['size']:>9,} users: sign-up p50 {r['signup']['p50']:7.1f} ms "
        f"({r['signup']['p50'] / base['signup']['p50']:.2f}x) p99 {r['signup']['p99']:7.1f} ms "
        f"({r['signup']['p99'] / base['signup']['p99']:.2f}x); /recover p50 "
        f"{r['recover']['p50']:6.1f} ms ({r['recover']['p50'] / base['recover']['p50']:.2f}x) "
        f"p99 {r['recover']['p99']:6.1f} ms ({r['recover']['p99'] / base['recover']['p99']:.2f}x); "
        f"{c['clients']} clients {c['per_s']:.1f} sign-ups/s "
        f"({c['per_s'] / base['concurrent']['per_s']:.2f}x)"
    )


def report(results: dict[str, Any]) -> str:
    floor = results["floor"]["all_cores_per_s"]
    lines = [
        f"bcrypt floor (cost {results['floor']['cost']}, {results['floor']['cores']} processes): "
        f"{floor:.1f} hashes/s; one hash {results['floor']['one_hash_ms']:.1f} ms",
    ]
    if "one_hash_cpu_ms" in results["floor"]:
        lines.append(
            f"one hash's CPU time {results['floor']['one_hash_cpu_ms']:.1f} ms: an idle machine's "
            f"floor is {results['floor']['idle_floor_per_s']:.1f} sign-ups/s"
        )
    lines += [
        "",
        "| database | users | sign-up p50 | p99 | /recover p50 | p99 "
        "| ratios vs first size (p50, p99; p50, p99) | sign-ups/s (16 clients) | vs first "
        "| vs bcrypt floor (run, this size's) | server CPU ms / sign-up | server cores "
        "| PG backends cores | machine cores |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for db in results["databases"]:
        base = db["sizes"][0]
        for r in db["sizes"]:
            c = r["concurrent"]
            ratios = ", ".join(
                f"{r[k][q] / base[k][q]:.2f}x"
                for k in ("signup", "recover")
                for q in ("p50", "p99")
            )
            lines.append(
                f"| {db['database']} | {r['size']:,} | {r['signup']['p50']:.1f} ms "
                f"| {r['signup']['p99']:.1f} ms | {r['recover']['p50']:.1f} ms "
                f"| {r['recover']['p99']:.1f} ms | {ratios} | {c['per_s']:.1f} "
                f"| {c['per_s'] / base['concurrent']['per_s']:.2f}x | {c['per_s'] / floor:.2f}, "
                f"{c['vs_floor_now']:.2f} "
                f"| {c['server_cpu_ms_per_signup']:.0f} | {c['server_cores']:.2f} "
                f"| {c['postgres_backends_cores']:.2f} | {c['machine_cores']:.2f} |"
            )
    for db in results["databases"]:
        for r in db["sizes"]:
            if "profile" not in r:
                continue
            p = r["profile"]
            lines += [
                "",
                f"{db['database']}, {r['size']:,} users: where a sign-up's time goes "
                f"({p['signups']} sequential, client p50 {p['client_p50_ms']:.1f} ms), "
                "ms per sign-up:",
            ]
            lines += [
                f"  {name:<52} {step['ms_per_signup']:7.2f}  ({step['calls_per_signup']:.1f} calls)"
                for name, step in p["steps"].items()
            ]
            rest = breakdown_rest(p)
            lines += [f"  {name:<52} {ms:7.2f}" for name, ms in rest.items()]
    return "\n".join(lines)


# The endpoint's steps that do not nest in one another (see bench/_profiled_serve.py).
TOP_STEPS = (
    "bcrypt hash (thread)",
    "look up the address",
    "create user (insert user + identity, read back)",
    "token mail (allowance + token + hand-off)",
    "audit entry",
    "response body (identities read)",
    "commit",
    "JSON rendering",
)


def breakdown_rest(p: dict[str, Any]) -> dict[str, float]:
    """What the timed steps leave: inside the app (routing, validation, middleware,
    the transaction's begin) and outside it (uvicorn, HTTP, the client), ms, means."""
    steps = p["steps"]
    timed = sum(steps[name]["ms_per_signup"] for name in TOP_STEPS if name in steps)
    whole = steps["server: whole request (ASGI app)"]["ms_per_signup"]
    return {
        "= rest inside the app (routing, validation, middleware)": whole - timed,
        "= outside the app (uvicorn, HTTP, client; mean)": p["client_mean_ms"] - whole,
    }


def save_figure(figure: Figure, path: Path) -> None:
    """Lay ``figure`` out and write it to ``path`` (docs/img)."""
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    print(f"plot: {path}")


def plot(runs: list[dict[str, Any]]) -> None:
    """p50 and p99 of sign-up and /recover against users in the table.

    One column per database, one row per request; one colour per run (its label),
    p50 solid and p99 dashed.
    """
    import matplotlib

    matplotlib.use("Agg")  # no screen here
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")

    databases = list(dict.fromkeys(db["database"] for run in runs for db in run["databases"]))
    figure, axes = plt.subplots(
        2, len(databases), figsize=(5.4 * len(databases), 7.6), squeeze=False, sharex=True
    )
    colours = ["tab:red", "tab:blue", "tab:green", "tab:purple"]
    for column, database in enumerate(databases):
        for row, (kind, title) in enumerate(
            (("signup", "POST /signup"), ("recover", "POST /recover"))
        ):
            axis = axes[row][column]
            axis.set_xscale("log")
            axis.set_yscale("log")
            for colour, run in zip(colours, runs, strict=False):
                for db in run["databases"]:
                    if db["database"] != database:
                        continue
                    sizes = [r["size"] for r in db["sizes"]]
                    for q, style in (("p50", "-o"), ("p99", "--^")):
                        values = [r[kind][q] for r in db["sizes"]]
                        label = f"{run.get('label') or 'run'} {q}"
                        axis.plot(sizes, values, style, color=colour, label=label)
                    axis.set_xticks(sizes, [f"{s:,}" for s in sizes])
            axis.xaxis.set_minor_formatter(NullFormatter())
            axis.yaxis.set_major_formatter(plain)
            axis.yaxis.set_minor_formatter(plain)
            axis.set_title(f"{title}, {database}")
            axis.set_ylabel("latency, ms (log)")
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize=7)
            if row == 1:
                axis.set_xlabel("users in the table")
    save_figure(figure, PLOT)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", metavar="URL", help="PostgreSQL server for its databases")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--n", type=int, default=300, help="sequential pairs kept per size")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="concurrent phase bound")
    parser.add_argument("--max-signups", type=int, default=600, help="concurrent phase bound")
    parser.add_argument("--floor-seconds", type=float, default=3.0)
    parser.add_argument("--mode", default="outbox", help="delivery mode (see bench/_service.py)")
    parser.add_argument(
        "--profile", action="store_true", help="time a sign-up's steps (largest size)"
    )
    parser.add_argument("--profile-n", type=int, default=100)
    parser.add_argument("--label", default="", help="what code ran (kept in the results)")
    parser.add_argument("--out", default="scale", help="results name: bench/results/<out>.json")
    parser.add_argument("--plot", action="store_true", help="draw docs/img/scale.png")
    parser.add_argument(
        "--compare",
        default="",
        help="results names (comma-separated) drawn before this run's, e.g. scale-before",
    )
    parser.add_argument("--replot", action="store_true", help="only redraw from the results")
    args = parser.parse_args(argv)
    path = RESULTS / f"{args.out}.json"
    earlier = [
        json.loads((RESULTS / f"{n}.json").read_text()) for n in args.compare.split(",") if n
    ]
    if args.replot:
        plot([*earlier, json.loads(path.read_text())])
        return
    kinds = args.databases.split(",")
    if "postgresql" in kinds and not args.postgres:
        parser.error("--postgres URL is needed for the postgresql database")
    results: dict[str, Any] = {
        "label": args.label,
        "mode": args.mode,
        "autoconfirm": False,
        "n": args.n,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_start": load_average(),
    }
    results["floor"] = bcrypt_floor(args.floor_seconds)
    print(f"floor: {results['floor']}", flush=True)
    results["databases"] = []
    for kind in kinds:
        results["databases"].append(measure_database(args, kind))
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(results, indent=1))  # what is done so far survives a crash
    results["floor_end"] = bcrypt_floor(args.floor_seconds)
    results["load_end"] = load_average()
    path.write_text(json.dumps(results, indent=1))
    print(report(results))
    print(f"results: {path}")
    if args.plot:
        plot([*earlier, results])


if __name__ == "__main__":
    main()

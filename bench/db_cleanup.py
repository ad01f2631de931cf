"""What the stale-row cleanup costs a request: p50 of a cheap write, cleanup on vs off.

Two ``apitask-auth serve`` processes (uvicorn, inline delivery, response-time
matching off), each on its own SQLite file (or PostgreSQL database) seeded
alike with 20k revoked refresh tokens two days old, so every step on the "on"
server finds rows to delete (100 a step; the worst case, not an idle one).
The only difference: ``GOTRUE_DB_CLEANUP_ENABLED``. The "on" server's rows
removed are read from its ``/metrics`` at the end, to show the steps ran.

The request: ``POST /recover`` for an unknown address (200, no mail, no
write): each answer hands the "on" server a cleanup step. Rounds of
``--n`` sequential requests to each server back to back, the order
alternating per round; the per-round ratio on/off of p50 is reported as
median and range, with the load average.

SQLite only: there a step holds the database's one write lock, the case
where a cleanup could delay a request's writes; PostgreSQL's row locks
are skipped (``SKIP LOCKED``).

Run: ``.venv/bin/python bench/db_cleanup.py [--rounds 10] [--n 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from apitask_auth.storage.db import create_engine
from apitask_auth.storage.migrations import migrate_all
from apitask_auth.storage.tables import refresh_tokens, sessions, users

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-bench-secret-bench-secret"
STALE = 20_000


async def _seed(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate_all(engine, url)
        old = datetime.now(UTC) - timedelta(days=2)
        user_id, session_id = str(uuid.uuid4()), str(uuid.uuid4())
        async with engine.begin() as conn:
            await conn.execute(
                insert(users).values(
                    id=user_id,
                    aud="authenticated",
                    role="authenticated",
                    email=f"{user_id}@example.com",
                    raw_app_meta_data={},
                    raw_user_meta_data={},
                    created_at=old,
                    updated_at=old,
                )
            )
            await conn.execute(
                insert(sessions).values(
                    id=session_id, user_id=user_id, amr=[], created_at=old, updated_at=old
                )
            )
            await conn.execute(
                insert(refresh_tokens),
                [
                    {
                        "token": uuid.uuid4().hex,
                        "user_id": user_id,
                        "session_id": session_id,
                        "revoked": True,
                        "created_at": old,
                        "updated_at": old,
                    }
                    for _ in range(STALE)
                ],
            )
    finally:
        await engine.dispose()


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(url: str, cleanup: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    env = os.environ | {
        "DATABASE_URL": url,
        "GOTRUE_JWT_SECRET": SECRET,
        "GOTRUE_SITE_URL": "http://localhost:3000",
        "API_EXTERNAL_URL": f"http://127.0.0.1:{port}",
        "GOTRUE_SECURITY_MATCH_RESPONSE_TIMES": "false",
        "GOTRUE_RATE_LIMIT_EMAIL_SENT": "100000",
        "GOTRUE_DB_CLEANUP_ENABLED": "true" if cleanup else "false",
        "GOTRUE_LOG_LEVEL": "warning",
        "GOTRUE_METRICS_ENABLED": "true",
        "PORT": str(port),
    }
    exe = ROOT / ".venv" / "bin" / "apitask-auth"
    process = subprocess.Popen([str(exe), "serve"], env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.05)  # waiting for a child process to listen: nothing to await
    raise RuntimeError("server did not start")


def _p50(client: httpx.Client, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        answer = client.post("/recover", json={"email": "nobody@example.com"})
        times.append(time.perf_counter() - start)
        assert answer.status_code == 200, answer.text
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument(
        "--control",
        action="store_true",
        help="both servers with the cleanup off (A/A): what the bench reads when nothing differs",
    )
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    urls = {kind: f"sqlite:///{tmp / f'{kind}.db'}" for kind in ("on", "off")}
    for url in urls.values():
        asyncio.run(_seed(url))
    servers = {kind: _serve(url, kind == "on" and not args.control) for kind, url in urls.items()}
    try:
        clients = {kind: httpx.Client(base_url=base) for kind, (_, base) in servers.items()}
        for client in clients.values():
            _p50(client, 20)  # warm-up
        ratios, p50s = [], {"on": [], "off": []}  # type: ignore[var-annotated]
        for k in range(args.rounds):
            order = ("on", "off") if k % 2 == 0 else ("off", "on")
            got = {kind: _p50(clients[kind], args.n) for kind in order}
            for kind in got:
                p50s[kind].append(got[kind])
            ratios.append(got["on"] / got["off"])
        load = os.getloadavg()
        removed = [
            line
            for line in clients["on"].get("/metrics").text.splitlines()
            if line.startswith("gotrue_cleanup_affected_rows_total")
        ]
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait()
    result: dict[str, Any] = {
        "backend": "sqlite",
        "control": args.control,
        "rounds": args.rounds,
        "n": args.n,
        "stale_rows": STALE,
        "p50_ms": {kind: statistics.median(v) * 1000 for kind, v in p50s.items()},
        "ratio_on_off": {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
        },
        "loadavg": load,
        "removed_by_on_server": removed,
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / f"db_cleanup{'-control' if args.control else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

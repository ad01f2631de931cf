"""Where the database time of ``POST /recover`` goes, for a real address and an unknown one.

In-process, without HTTP: the service's own calls, in the order the
endpoint makes them, on a fresh database (a SQLite file, or with
``--postgres URL`` a fresh PostgreSQL database):

* unknown address: begin, look the user up (none), commit;
* real address: begin, look the user up, the audit entry, the global e-mail
  allowance (autoconfirm off, as by default), the one-time token (its row and
  the user's columns), commit.

Prints the median of each phase and the real address's database time as a
ratio to the unknown one's. Then the parts of that difference that no Python
can remove, measured in the same run: a bare trip to the database (SQLite:
a hand-off to the connection's thread and back; PostgreSQL: asyncpg's
``SELECT 1``),
and what a commit that wrote costs more than one that did not (the log's
flush to disk). ``floor`` is the unknown address's time plus one trip per
extra statement plus that flush: the least the real address can cost with
these statements, each in its own trip. Its excess over the unknown
address is what any request for a real address pays at least, whatever its
HTTP overhead: set against ``bench/latency.py``'s no-mail request, it says
how close to that request the mail request can come.

Run: ``.venv/bin/python bench/recover_flow.py [--n 400] [--postgres URL]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request

from _service import postgres_database
from apitask_auth.accounts.audit import audit
from apitask_auth.accounts.security import token_hash
from apitask_auth.accounts.users import find_user_by_email, set_one_time_token
from apitask_auth.config import load_settings
from apitask_auth.http.ratelimit import dispose_allowance, take_email_allowance
from apitask_auth.storage.db import create_engine
from apitask_auth.storage.migrations import migrate
from apitask_auth.storage.tables import new_id, now, users

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# Statements the real address makes beyond the unknown one's lookup: audit,
# allowance, token row, user columns.
EXTRA_STATEMENTS = 4


class Phases:
    """Durations per phase name, in microseconds."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = defaultdict(list)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.values[name].append((time.perf_counter() - start) * 1e6)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])


async def _add_users(engine: AsyncEngine, n: int) -> list[str]:
    emails = [f"user{i}@bench.example" for i in range(n)]
    async with engine.begin() as conn:
        for address in emails:
            at = now()
            await conn.execute(
                users.insert().values(
                    id=new_id(),
                    aud="authenticated",
                    role="authenticated",
                    email=address,
                    created_at=at,
                    updated_at=at,
                    raw_user_meta_data={},
                    raw_app_meta_data={},
                    is_sso_user=False,
                )
            )
    return emails


async def _trip(conn: AsyncConnection) -> None:
    """One round trip to the database doing next to nothing, under SQLAlchemy."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        await raw.fetchval("SELECT 1")  # asyncpg: one message to the server and back
    else:
        await raw._execute(int)  # aiosqlite's hand-off to its thread, and back


async def measure(url: str, n: int) -> Phases:
    settings = load_settings(
        env_file=None,
        site_url="http://127.0.0.1:3000",
        api_external_url="http://127.0.0.1:9999",
        database_url=url,
        jwt_secret="bench-" + "x" * 40,
        rate_limit_email_sent="1000000",
    )
    engine = create_engine(url)
    await migrate(engine)
    emails = await _add_users(engine, n)
    request = Request({"type": "http", "client": ("127.0.0.1", 1), "headers": []})
    phases = Phases()
    try:
        for i, address in enumerate(emails):
            with phases.timed("unknown: total"):
                with phases.timed("unknown: begin"):
                    begin = engine.begin()
                    conn = await begin.__aenter__()
                with phases.timed("unknown: look up"):
                    await find_user_by_email(conn, f"nobody{i}@bench.example", "authenticated")
                with phases.timed("unknown: commit"):
                    await begin.__aexit__(None, None, None)
            with phases.timed("real: total"):
                with phases.timed("real: begin"):
                    begin = engine.begin()
                    conn = await begin.__aenter__()
                with phases.timed("real: look up"):
                    user = await find_user_by_email(conn, address, "authenticated")
                    assert user is not None
                with phases.timed("real: audit entry"):
                    await audit(conn, request, user["id"], address, "user_recovery_requested")
                with phases.timed("real: e-mail allowance"):
                    await take_email_allowance(conn, settings)
                with phases.timed("real: token (row + user)"):
                    await set_one_time_token(
                        conn,
                        user,
                        "recovery_token",
                        token_hash(address, "123456", settings.jwt_secret),
                        address,
                        sent_at_column="recovery_sent_at",
                    )
                with phases.timed("real: commit"):
                    await begin.__aexit__(None, None, None)
            async with engine.connect() as conn:
                with phases.timed("bare trip"):
                    await _trip(conn)
    finally:
        await dispose_allowance(engine)
        await engine.dispose()
    return phases


def report(phases: Phases, database: str) -> str:
    lines = [f"{database}: median per phase, microseconds", ""]
    lines += [f"  {name:<28} {phases.median(name):>8.0f}" for name in phases.values]
    unknown, real = phases.median("unknown: total"), phases.median("real: total")
    flush = phases.median("real: commit") - phases.median("unknown: commit")
    floor = unknown + EXTRA_STATEMENTS * phases.median("bare trip") + flush
    lines += [
        "",
        f"  real / unknown database time: {real / unknown:.2f}x",
        f"  commit that wrote minus one that did not: {flush:.0f} us",
        f"  floor ({EXTRA_STATEMENTS} extra trips + that): {floor:.0f} us = "
        f"{floor / unknown:.2f}x the unknown address",
        f"  so a real address costs a request at least {floor - unknown:.0f} us more",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=400, help="requests of each kind")
    parser.add_argument("--postgres", metavar="URL", help="measure on this PostgreSQL server")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="apitask-bench-") as tmp,
        postgres_database(args.postgres) if args.postgres else contextlib.nullcontext() as pg,
    ):
        url = pg or f"sqlite:///{Path(tmp) / 'auth.db'}"
        phases = asyncio.run(measure(url, args.n))
    print(report(phases, "postgresql" if args.postgres else "sqlite"))


if __name__ == "__main__":
    main()

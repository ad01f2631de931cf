"""No sequential scans on the request path, at a realistic size.

Every statement the service sends while it runs the e-mail flows once (sign-up,
verify, token, refresh, recover, magic link, OTP, resend, user, admin look-ups
and changes) is recorded, then explained on a populated database: 200k users
(and their identities, tokens, sessions, refresh tokens, 200k finished outbox
jobs) on PostgreSQL, 20k on SQLite. No plan may read ``users``, ``identities``,
``one_time_tokens``, ``sessions``, ``refresh_tokens``, ``flow_state`` or
``apitask_jobs`` whole. The outbox's own statements (enqueue, claim and the
worker's write-backs) are explained the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pyotp
import pytest
from sqlalchemy import event

from apitask.mail import RecordingClient
from apitask.outbox._sql import load_queries, numbered
from apitask_auth.app import create_app
from apitask_auth.config import load_settings
from apitask_auth.storage.migrations import migrate_all

from ._accounts import bearer
from ._schema import USER_COLUMNS, fresh_database
from .conftest import SECRET, Service

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

TABLES = {
    "users",
    "identities",
    "one_time_tokens",
    "sessions",
    "refresh_tokens",
    "flow_state",
    "apitask_jobs",
}
PASSWORD = "secret-password"
AUD = "authenticated"
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
_NOW = datetime.now(UTC)


def _id(kind: int, n: int) -> str:
    # Unique, UUID-shaped and cheap (uuid4() for a million rows costs seconds).
    return f"{n:08x}-0000-4000-8{kind:03x}-{n:012x}"


def _seed_rows(count: int) -> dict[str, list[tuple[Any, ...]]]:
    """``count`` users as a grown deployment has them, with their other rows."""
    users: list[tuple[Any, ...]] = []
    identities: list[tuple[Any, ...]] = []
    tokens: list[tuple[Any, ...]] = []
    sessions: list[tuple[Any, ...]] = []
    refresh: list[tuple[Any, ...]] = []
    jobs: list[tuple[Any, ...]] = []
    app_meta = '{"provider": "email", "providers": ["email"]}'
    password = "$2a$10$" + "x" * 53
    for n in range(count):
        user_id = _id(0, n)
        at = _EPOCH + timedelta(seconds=n)
        email = f"user{n}@example.com"
        confirmed = at if n % 10 else None
        user = (user_id, AUD, "authenticated", email, password, confirmed)
        users.append((*user, app_meta, "{}", at, at, 0, False, False))
        identity = f'{{"sub": "{user_id}", "email": "{email}"}}'
        identities.append((_id(1, n), user_id, user_id, identity, "email", email, at, at))
        if confirmed is None:
            tokens.append((_id(2, n), user_id, "confirmation_token", f"{n:056x}", email, at, at))
        session_id = _id(3, n)
        sessions.append((session_id, user_id, "aal1", "[]", at, at))
        parent = f"p{n:011x}"
        refresh.append((parent, user_id, session_id, None, True, at, at))
        refresh.append((f"c{n:011x}", user_id, session_id, parent, False, at, at))
        # Retention keeps finished jobs for a while: most are recent, few are due.
        done = _NOW - timedelta(seconds=n % 86_400)
        jobs.append(("mail", "{}", "succeeded", 1, done, done, done))
    return {
        "users": users,
        "identities": identities,
        "one_time_tokens": tokens,
        "sessions": sessions,
        "refresh_tokens": refresh,
        "apitask_jobs": jobs,
    }


COLUMNS = {
    "users": USER_COLUMNS,
    "identities": (
        "id",
        "provider_id",
        "user_id",
        "identity_data",
        "provider",
        "email",
        "created_at",
        "updated_at",
    ),
    "one_time_tokens": (
        "id",
        "user_id",
        "token_type",
        "token_hash",
        "relates_to",
        "created_at",
        "updated_at",
    ),
    "sessions": ("id", "user_id", "aal", "amr", "created_at", "updated_at"),
    "refresh_tokens": (
        "token",
        "user_id",
        "session_id",
        "parent",
        "revoked",
        "created_at",
        "updated_at",
    ),
    "apitask_jobs": ("type", "payload", "state", "attempts", "run_at", "created_at", "finished_at"),
}


async def _seed_postgres(url: str, count: int) -> None:
    """COPY the rows in, then VACUUM ANALYZE (what autovacuum does on a live server)."""
    seed = await asyncio.to_thread(_seed_rows, count)
    connection = await asyncpg.connect(url)
    try:
        for table, rows in seed.items():
            await connection.copy_records_to_table(table, records=rows, columns=COLUMNS[table])
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


def _seed_sqlite(path: str, count: int) -> None:
    def stored(table: str, value: Any) -> Any:
        if not isinstance(value, datetime):
            return value
        if table == "apitask_jobs":  # the outbox keeps epoch seconds
            return value.timestamp()
        # SQLAlchemy's SQLite form of a UTC timestamp
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

    with contextlib.closing(sqlite3.connect(path)) as connection:
        for table, rows in _seed_rows(count).items():
            columns = COLUMNS[table]
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            connection.executemany(sql, ([stored(table, v) for v in row] for row in rows))
        connection.commit()
        connection.execute("ANALYZE")


@contextlib.asynccontextmanager
async def _service(url: str) -> AsyncIterator[tuple[Service, list[tuple[str, Any]]]]:
    """The service on ``url`` (migrated), and the list its statements are recorded in."""
    settings = load_settings(
        env_file=None,
        site_url="http://localhost:3000",
        api_external_url="http://auth.test",
        jwt_secret=SECRET,
        database_url=url,
        smtp_max_frequency="1ms",
        rate_limit_email_sent="1000",
        mailer_secure_email_change_enabled=False,
        jwt_aud=AUD,  # the audience of the seeded users: look-ups search among them
        # The cleanup's statements run off the request path, on the pool's own schedule,
        # so they would race the recording; test_db_cleanup explains each of them.
        db_cleanup_enabled=False,
    )
    mail = RecordingClient()
    app = await asyncio.to_thread(create_app, settings, transport=mail)
    engine = app.state.service.engine
    await migrate_all(engine, url)
    recorded: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        recorded.append((statement, parameters))

    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://auth.test"
        )
        async with http:
            event.listen(engine.sync_engine, "before_cursor_execute", record)
            try:
                yield Service(app, http, settings, mail), recorded
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", record)


async def _run_flows(svc: Service) -> None:
    """Every flow of the brief once; each answer checked, so each flow really ran."""
    http, admin = svc.http, svc.admin_headers()

    async def ok(response: Any, status: int = 200) -> Any:
        answer = await response
        assert answer.status_code == status, (answer.request.url, answer.text)
        return answer.json() if answer.content else None

    address, other = "plan-a@example.com", "Plan-B@Example.com"
    await ok(http.post("/signup", json={"email": address, "password": PASSWORD}))
    await ok(http.post("/signup", json={"email": other, "password": PASSWORD}))
    await ok(http.post("/resend", json={"type": "signup", "email": other}))
    session = await ok(
        http.post("/verify", json={"type": "signup", "email": address, "token": svc.otp(address)})
    )
    await ok(http.post("/token?grant_type=password", json={"email": address, "password": PASSWORD}))
    rotated = await ok(
        http.post(
            "/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}
        )
    )
    # The revoked token again: its child is looked up (and handed out once more).
    await ok(
        http.post(
            "/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}
        )
    )
    user_headers = bearer(rotated)
    await ok(http.get("/user", headers=user_headers))
    await ok(http.put("/user", json={"data": {"plan": 1}}, headers=user_headers))
    await ok(http.put("/user", json={"email": "plan-c@example.com"}, headers=user_headers))
    await ok(http.get("/reauthenticate", headers=user_headers))
    await ok(http.post("/recover", json={"email": address}))
    await ok(http.post("/recover", json={"email": "nobody@example.com"}))
    await ok(http.post("/magiclink", json={"email": address}))
    link = svc.link(address)
    token_hash = re.search(r"token=([^&]+)", link)
    assert token_hash is not None
    await ok(http.post("/verify", json={"type": "magiclink", "token_hash": token_hash[1]}))
    await ok(http.post("/otp", json={"email": address}))
    await ok(http.post("/otp", json={"email": "plan-new@example.com"}))
    await ok(http.post("/otp", json={"email": address, "create_user": False}))
    await ok(
        http.post("/verify", json={"type": "email", "email": address, "token": svc.otp(address)})
    )
    # MFA: enrol, challenge, verify (the session raised), the admin's view, unenrol.
    factor = await ok(http.post("/factors", json={"factor_type": "totp"}, headers=user_headers))
    challenge = await ok(http.post(f"/factors/{factor['id']}/challenge", headers=user_headers))
    code = pyotp.TOTP(factor["totp"]["secret"]).now()
    raised = await ok(
        http.post(
            f"/factors/{factor['id']}/verify",
            json={"challenge_id": challenge["id"], "code": code},
            headers=user_headers,
        )
    )
    user_headers = bearer(raised)
    owner = raised["user"]["id"]
    await ok(http.get(f"/admin/users/{owner}/factors", headers=admin))
    await ok(
        http.put(
            f"/admin/users/{owner}/factors/{factor['id']}",
            json={"friendly_name": "plan"},
            headers=admin,
        )
    )
    await ok(http.delete(f"/factors/{factor['id']}", headers=user_headers))
    await ok(http.post("/logout", headers=user_headers), 204)

    created = await ok(
        http.post(
            "/admin/users",
            json={"email": "plan-admin@example.com", "password": PASSWORD},
            headers=admin,
        )
    )
    await ok(http.get(f"/admin/users/{created['id']}", headers=admin))
    await ok(http.get("/admin/users?page=3&per_page=50", headers=admin))
    await ok(
        http.put(
            f"/admin/users/{created['id']}",
            json={"email": "plan-admin2@example.com", "email_confirm": True},
            headers=admin,
        )
    )
    await ok(http.post("/invite", json={"email": "plan-invite@example.com"}, headers=admin))
    for kind in ("signup", "magiclink", "recovery"):
        await ok(
            http.post(
                "/admin/generate_link",
                json={"type": kind, "email": "plan-link@example.com", "password": PASSWORD},
                headers=admin,
            )
        )
    await ok(http.delete(f"/admin/users/{created['id']}", headers=admin))


_DML = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)


# A request reads a handful of rows of a table; the admin page reads offset + per_page
# (150 here). Anything near the table's size is a scan, whatever the node is called
# (an "Index Scan" that walks a whole audience is one).
MAX_ROWS = 1000
# X-Total-Count of GET /admin/users: an exact count of the audience, as GoTrue's
# (pop's Paginate) is. It reads every row of the audience by definition; the page
# itself is index-backed. The one statement exempted, by its exact shape.
_TOTAL_COUNT = re.compile(r"^SELECT count\(\*\) AS count_1\s+FROM \(SELECT users\.id AS id, ")


def _reads(plan: dict[str, Any]) -> Iterator[tuple[str, str, float]]:
    """(table, node, rows read) for every node of an EXPLAIN ANALYZE plan on our tables."""
    table = plan.get("Relation Name")
    if table in TABLES:
        read = sum(
            plan.get(key, 0)
            for key in ("Actual Rows", "Rows Removed by Filter", "Rows Removed by Index Recheck")
        )
        yield table, plan["Node Type"], read * plan.get("Actual Loops", 1)
    for child in plan.get("Plans", []):
        yield from _reads(child)


def _offences(plan: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [
        (table, node, read)
        for table, node, read in _reads(plan)
        if node == "Seq Scan" or read > MAX_ROWS
    ]


async def _pg_plan(connection: asyncpg.Connection, sql: str, args: list[Any]) -> dict[str, Any]:
    """The plan of ``sql``, run for real (EXPLAIN ANALYZE) in a transaction rolled back.

    INSERTs are only planned: replaying one would collide with the row it made, and
    an INSERT reads no table; a statement that fails on replay is only planned too.
    """
    modes = ["FORMAT JSON"] if re.match(r"\s*INSERT", sql) else ["ANALYZE, FORMAT JSON"]
    for mode in [*modes, "FORMAT JSON"]:
        transaction = connection.transaction()
        await transaction.start()
        try:
            text = await connection.fetchval(f"EXPLAIN ({mode}) {sql}", *args)
        except asyncpg.PostgresError:
            continue
        finally:
            await transaction.rollback()
        plan: dict[str, Any] = json.loads(text)[0]["Plan"]
        return plan
    raise AssertionError(f"cannot explain {sql}")


_SQLITE_SCAN = re.compile(r"^SCAN (\w+)")


def _sqlite_scans(details: list[str]) -> list[str]:
    """The tables of ours an SQLite query plan walks whole: every "SCAN <table>", with
    or without "USING INDEX" (a full pass over an index is no look-up)."""
    found = []
    for detail in details:
        match = _SQLITE_SCAN.match(detail)
        if match and match[1] in TABLES:
            found.append(detail)
    return found


_OUTBOX_QUERIES = {dialect: load_queries(dialect) for dialect in ("postgres", "sqlite")}


def _outbox_statements(dialect: str) -> list[tuple[str, dict[str, Any]]]:
    """The outbox's request-path and worker statements, with plausible parameters."""
    queries = _OUTBOX_QUERIES[dialect]
    params: dict[str, Any] = {
        "type": "mail",
        "payload": "{}",
        "idempotency_key": None,
        "delay": 0.0,
        "request_id": None,
        "channel": "apitask_jobs",
        "worker": "w1",
        "lease": 30.0,
        "limit": 8,
        "ids": [1, 2] if dialect == "postgres" else "[1, 2]",
        "id": 1,
        "error": "boom",
        "state": "succeeded",
        "age": 7 * 86400.0,
        "now": 1.0e9,
        "keep": 50,
        "kind": "failed",
        "detail": "boom",
    }
    names = ["insert", "insert_unkeyed", "claim", "heartbeat", "reap", "succeed", "succeed_delete"]
    names += ["retry", "bury", "release", "purge", "events"]
    # A job's history: SQLite's own statements (PostgreSQL's ride in the ones above).
    names += ["log_events", "trim_events", "reap_events", "succeed_delete_events", "purge_events"]
    return [(queries[name], params) for name in names if name in queries]


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(300)  # 60-100 s measured on a 2-core machine at load average 10
async def test_no_sequential_scans_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    """200k users: no statement of the flows, and no outbox statement, reads a table
    whole or more than MAX_ROWS of its rows (run for real, rolled back)."""
    async with fresh_database("postgres", tmp_path, postgres_url) as url:
        async with _service(url) as (svc, recorded):
            recorded.clear()  # the migration's statements are not the request path
            await _seed_postgres(url, 200_000)
            await _run_flows(svc)
        statements = [(s, p) for s, p in recorded if _DML.match(s)]
        assert len(statements) > 50
        offenders = []
        connection = await asyncpg.connect(url)
        try:
            for statement, parameters in statements:
                if _TOTAL_COUNT.match(statement):
                    continue
                plan = await _pg_plan(connection, statement, list(parameters or ()))
                if found := _offences(plan):
                    offenders.append((found, statement))
            for query, params in _outbox_statements("postgres"):
                sql, names = numbered(query)
                plan = await _pg_plan(connection, sql, [params[name] for name in names])
                if found := _offences(plan):
                    offenders.append((found, query))
        finally:
            await connection.close()
    assert offenders == []


@pytest.mark.slow
async def test_no_full_table_scans_on_sqlite(tmp_path: Path) -> None:
    """20k users: no statement of the flows, and no outbox statement, scans a table."""
    path = str(tmp_path / "plans.db")
    url = f"sqlite:///{path}"
    async with _service(url) as (svc, recorded):
        recorded.clear()
        await asyncio.to_thread(_seed_sqlite, path, 20_000)
        await _run_flows(svc)
    statements = [(s, p) for s, p in recorded if _DML.match(s)]
    assert len(statements) > 50

    def explain() -> list[tuple[list[str], str]]:  # off the loop: sqlite3 blocks
        offenders = []
        with contextlib.closing(sqlite3.connect(path)) as connection:
            for statement, parameters in statements:
                rows = connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters or ())
                if scans := _sqlite_scans([row[3] for row in rows]):
                    offenders.append((scans, statement))
            for query, params in _outbox_statements("sqlite"):
                rows = connection.execute(f"EXPLAIN QUERY PLAN {query}", params)
                if scans := _sqlite_scans([row[3] for row in rows]):
                    offenders.append((scans, query))
        return offenders

    assert await asyncio.to_thread(explain) == []

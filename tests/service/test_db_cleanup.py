"""The stale-row cleanup (``GOTRUE_DB_CLEANUP_ENABLED``), on SQLite and PostgreSQL.

Rows are made stale by writing old timestamps, never by waiting. Each
statement is run on a fresh migrated database, so its count is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest
import uvicorn
from sqlalchemy import bindparam, event, func, insert, select, text

from apitask import Outcome
from apitask.mail import RecordingClient
from apitask_auth.app import create_app
from apitask_auth.config import load_settings
from apitask_auth.http.db_cleanup import DatabaseCleanup
from apitask_auth.storage.migrations import migrate
from apitask_auth.storage.stale_rows import run_sweep, stale_row_sweeps
from apitask_auth.storage.tables import (
    UTCDateTime,
    flow_state,
    mfa_challenges,
    mfa_factors,
    one_time_tokens,
    refresh_tokens,
    sessions,
    users,
    verify_attempts,
)

from ._schema import engine_for, fresh_database, user_row
from .conftest import SECRET

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from apitask_auth.config import Settings
    from apitask_auth.storage.db import Backend

    from .conftest import Service

NOW = datetime.now(UTC)
TYPE = "auth.db_cleanup"
HOUR = timedelta(hours=1)


def _settings(database_url: str, **overrides: Any) -> Settings:
    return load_settings(
        env_file=None,
        site_url="http://localhost:3000",
        api_external_url="http://auth.test",
        jwt_secret=SECRET,
        database_url=database_url,
        **overrides,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """The backend, and the PostgreSQL server's URL (None for SQLite)."""
    if request.param == "sqlite":
        return "sqlite", None
    url: str = request.getfixturevalue("postgres_url")
    return "postgres", url


@pytest.fixture
async def fresh(kind: tuple[str, str | None], tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The service's engine on an empty, migrated database of its own."""
    async with fresh_database(kind[0], tmp_path, kind[1]) as url, engine_for(url) as engine:
        await migrate(engine)
        yield engine


def _user(conn_rows: list[dict[str, Any]]) -> str:
    row = user_row(f"u{uuid.uuid4().hex[:10]}@example.com")
    conn_rows.append(row)
    return str(row["id"])


async def _ids(conn: AsyncConnection, table: Any, column: str = "id") -> set[Any]:
    return set((await conn.execute(select(table.c[column]))).scalars())


async def _sweep(engine: AsyncEngine, table: str, action: str = "delete") -> int:
    settings = _settings("sqlite:///unused.db")
    (found,) = [s for s in stale_row_sweeps(settings) if (s.table, s.action) == (table, action)]
    return await run_sweep(engine, found, NOW, timeout=timedelta(seconds=5))


def _session(user_id: str, not_after: datetime | None = None) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "user_id": user_id,
        "aal": "aal1",
        "amr": [],
        "not_after": not_after,
        "created_at": NOW - 100 * HOUR,
        "updated_at": NOW - 100 * HOUR,
    }


def _token(user_id: str, session_id: str, *, revoked: bool, age: timedelta) -> dict[str, Any]:
    return {
        "token": uuid.uuid4().hex,
        "user_id": user_id,
        "session_id": session_id,
        "revoked": revoked,
        "created_at": NOW - age,
        "updated_at": NOW - age,
    }


async def test_refresh_tokens_revoked_a_day_ago_are_deleted(fresh: AsyncEngine) -> None:
    """Revoked and untouched for 24 h: deleted, 100 at a time; the rest stay."""
    rows: list[dict[str, Any]] = []
    user_id = _user(rows)
    session = _session(user_id)
    stale = [_token(user_id, session["id"], revoked=True, age=25 * HOUR) for _ in range(101)]
    fresh_rows = [
        _token(user_id, session["id"], revoked=True, age=23 * HOUR),
        _token(user_id, session["id"], revoked=False, age=100 * HOUR),
    ]
    async with fresh.begin() as conn:
        await conn.execute(insert(users), rows)
        await conn.execute(insert(sessions), [session])
        await conn.execute(insert(refresh_tokens), stale + fresh_rows)
    assert await _sweep(fresh, "refresh_tokens") == 100
    assert await _sweep(fresh, "refresh_tokens") == 1
    assert await _sweep(fresh, "refresh_tokens") == 0
    async with fresh.connect() as conn:
        left = await _ids(conn, refresh_tokens, "token")
    assert left == {row["token"] for row in fresh_rows}


async def test_expired_sessions_lose_their_tokens_then_go(fresh: AsyncEngine) -> None:
    """Past not_after + 24 h: the session's live tokens are revoked; + 72 h: the session
    is deleted (10 at a time) with its tokens. Sessions without not_after stay."""
    rows: list[dict[str, Any]] = []
    user_id = _user(rows)
    recent = _session(user_id, NOW - 23 * HOUR)
    expired = _session(user_id, NOW - 25 * HOUR)
    dead = [_session(user_id, NOW - 73 * HOUR) for _ in range(11)]
    forever = _session(user_id, None)
    all_sessions = [recent, expired, *dead, forever]
    tokens = {s["id"]: _token(user_id, s["id"], revoked=False, age=HOUR) for s in all_sessions}
    async with fresh.begin() as conn:
        await conn.execute(insert(users), rows)
        await conn.execute(insert(sessions), all_sessions)
        await conn.execute(insert(refresh_tokens), list(tokens.values()))

    # Revoked: the tokens of the expired and the dead sessions (12).
    assert await _sweep(fresh, "refresh_tokens", "revoke") == 12
    assert await _sweep(fresh, "refresh_tokens", "revoke") == 0
    async with fresh.connect() as conn:
        live = set(
            (
                await conn.execute(
                    select(refresh_tokens.c.session_id).where(refresh_tokens.c.revoked.is_(False))
                )
            ).scalars()
        )
        revoked_at = (
            await conn.execute(
                select(refresh_tokens.c.updated_at).where(
                    refresh_tokens.c.session_id == expired["id"]
                )
            )
        ).scalar_one()
    assert live == {recent["id"], forever["id"]}
    assert revoked_at >= NOW  # revoked now: the revoked-token sweep waits another day

    assert await _sweep(fresh, "sessions") == 10
    assert await _sweep(fresh, "sessions") == 1
    assert await _sweep(fresh, "sessions") == 0
    async with fresh.connect() as conn:
        left = await _ids(conn, sessions)
        token_sessions = await _ids(conn, refresh_tokens, "session_id")
    assert left == {recent["id"], expired["id"], forever["id"]}
    assert token_sessions == left  # the dead sessions' tokens went with them


async def test_flow_states_challenges_and_unverified_factors(fresh: AsyncEngine) -> None:
    """Flow states and MFA challenges a day past their lifetime go (with a challenge,
    its code's hash); unverified factors a day old go; verified factors stay."""
    rows: list[dict[str, Any]] = []
    user_id = _user(rows)

    def flow(age: timedelta) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "auth_code": str(uuid.uuid4()),
            "code_challenge_method": "s256",
            "code_challenge": "x" * 43,
            "provider_type": "email",
            "authentication_method": "magiclink",
            "created_at": NOW - age,
            "updated_at": NOW - age,
        }

    def factor(status: str, age: timedelta) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "friendly_name": uuid.uuid4().hex,
            "factor_type": "phone",
            "status": status,
            "secret": "",
            "phone": "15550001111",
            "created_at": NOW - age,
            "updated_at": NOW - age,
        }

    verified = factor("verified", 100 * HOUR)

    def challenge(age: timedelta) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "factor_id": verified["id"],
            "ip_address": "127.0.0.1",
            "otp_code": "hash-of-" + uuid.uuid4().hex,
            "created_at": NOW - age,
        }

    # A day past the lifetime (five minutes, both): gone. Within it: kept.
    old_flow, new_flow = flow(24 * HOUR + timedelta(minutes=6)), flow(24 * HOUR)
    old_challenge, new_challenge = challenge(25 * HOUR), challenge(24 * HOUR)
    old_unverified, new_unverified = (
        factor("unverified", 25 * HOUR),
        factor("unverified", 23 * HOUR),
    )
    async with fresh.begin() as conn:
        await conn.execute(insert(users), rows)
        await conn.execute(insert(flow_state), [old_flow, new_flow])
        await conn.execute(insert(mfa_factors), [verified, old_unverified, new_unverified])
        await conn.execute(insert(mfa_challenges), [old_challenge, new_challenge])
    assert await _sweep(fresh, "flow_state") == 1
    assert await _sweep(fresh, "mfa_challenges") == 1
    assert await _sweep(fresh, "mfa_factors") == 1
    async with fresh.connect() as conn:
        assert await _ids(conn, flow_state) == {new_flow["id"]}
        hashes = set((await conn.execute(select(mfa_challenges.c.otp_code))).scalars())
        assert hashes == {new_challenge["otp_code"]}  # the expired code's hash is gone
        assert await _ids(conn, mfa_factors) == {verified["id"], new_unverified["id"]}


async def test_stale_counts_and_codes_go_with_the_hash_on_the_user(fresh: AsyncEngine) -> None:
    """Ours: a count of tries, and a code, a day past the longest code lifetime (a day
    by default) go; the code's hash on the user's row is blanked too."""
    rows: list[dict[str, Any]] = []
    old_user, new_user = _user(rows), _user(rows)
    rows[0]["recovery_token"] = "old-hash"
    rows[1]["recovery_token"] = "new-hash"

    def code(user_id: str, stored: str, age: timedelta) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "token_type": "recovery_token",
            "token_hash": stored,
            "relates_to": "someone@example.com",
            "created_at": NOW - age,
            "updated_at": NOW - age,
        }

    def count(user_id: str, age: timedelta) -> dict[str, Any]:
        return {
            "user_id": user_id,
            "token_type": "recovery_token",
            "failures": 3,
            "updated_at": NOW - age,
        }

    async with fresh.begin() as conn:
        await conn.execute(insert(users), rows)
        await conn.execute(
            insert(one_time_tokens),
            [code(old_user, "old-hash", 49 * HOUR), code(new_user, "new-hash", 47 * HOUR)],
        )
        await conn.execute(
            insert(verify_attempts), [count(old_user, 49 * HOUR), count(new_user, 47 * HOUR)]
        )
    assert await _sweep(fresh, "verify_attempts") == 1
    assert await _sweep(fresh, "one_time_tokens") == 1
    assert await _sweep(fresh, "one_time_tokens") == 0
    async with fresh.connect() as conn:
        assert await _ids(conn, verify_attempts, "user_id") == {new_user}
        assert set((await conn.execute(select(one_time_tokens.c.token_hash))).scalars()) == {
            "new-hash"
        }
        stored = dict((await conn.execute(select(users.c.id, users.c.recovery_token))).all())
    assert stored == {old_user: None, new_user: "new-hash"}


async def test_a_code_replaced_since_it_was_picked_keeps_its_new_hash(fresh: AsyncEngine) -> None:
    """Only the user's column that still holds the removed code is blanked."""
    rows: list[dict[str, Any]] = []
    user_id = _user(rows)
    rows[0]["confirmation_token"] = "newer"
    async with fresh.begin() as conn:
        await conn.execute(insert(users), rows)
        await conn.execute(
            insert(one_time_tokens),
            [
                {
                    "id": str(uuid.uuid4()),
                    "user_id": user_id,
                    "token_type": "confirmation_token",
                    "token_hash": "older",
                    "relates_to": "x@example.com",
                    "created_at": NOW - 49 * HOUR,
                    "updated_at": NOW - 49 * HOUR,
                }
            ],
        )
    assert await _sweep(fresh, "one_time_tokens") == 1
    async with fresh.connect() as conn:
        kept = (await conn.execute(select(users.c.confirmation_token))).scalar_one()
    assert kept == "newer"


# ---------------------------------------------------------------- plans


async def test_every_statement_finds_its_rows_by_an_index(fresh: AsyncEngine) -> None:
    """No statement reads its table whole: SQLite searches an index; PostgreSQL, told
    to avoid sequential scans, finds a plan without one (so an index serves it)."""
    settings = _settings("sqlite:///unused.db")
    async with fresh.connect() as conn:
        on: Backend = "postgresql" if conn.dialect.name == "postgresql" else "sqlite"
        explain = "EXPLAIN" if on == "postgresql" else "EXPLAIN QUERY PLAN"
        if on == "postgresql":
            await conn.exec_driver_sql("SET enable_seqscan = off")
        for sweep in stale_row_sweeps(settings):
            sql = f"{explain} {sweep.statements[on].text}"
            names = [name for name in ("cutoff", "now") if f":{name}" in sql]
            query = text(sql).bindparams(*(bindparam(n, type_=UTCDateTime()) for n in names))
            plan = [str(row[-1]) for row in await conn.execute(query, dict.fromkeys(names, NOW))]
            scans = [line for line in plan if "Seq Scan" in line or line.startswith("SCAN ")]
            assert scans == [], (sweep.table, sweep.action, plan)


# ---------------------------------------------------------------- in the service


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _logs() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("apitask_auth")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _cleanup(svc: Service) -> DatabaseCleanup:
    found: DatabaseCleanup | None = svc.app.state.cleanup
    assert found is not None
    return found


def _point_at(cleanup: DatabaseCleanup, table: str) -> None:
    """Make ``table``'s statement the next step's."""
    cleanup._next = [s.table for s in cleanup.sweeps].index(table)


async def test_a_successful_write_leads_to_one_step_others_to_none(
    make_service: Callable[..., Any],
) -> None:
    """A 2xx POST hands a step over; a GET, or a refused POST, does not."""
    svc: Service = await make_service(metrics_enabled=True)
    cleanup = _cleanup(svc)
    assert (await svc.http.get("/health")).status_code == 200
    assert (await svc.http.post("/logout")).status_code == 401
    assert cleanup.steps == 0 and cleanup.pool.counters.get(TYPE, Outcome.SUBMITTED) == 0
    assert (
        await svc.http.post("/recover", json={"email": "nobody@example.com"})
    ).status_code == 200
    await asyncio.wait_for(cleanup.wait_steps(1), 10)
    assert cleanup.failed == {}
    metrics = (await svc.http.get("/metrics")).text
    assert 'gotrue_cleanup_affected_rows_total{action="delete",table="refresh_tokens"} 0.0' in (
        metrics
    )
    assert 'pool="db_cleanup"' in metrics


async def test_a_failing_step_is_logged_and_never_fails_the_request(
    make_service: Callable[..., Any],
) -> None:
    """A step whose statement fails: the request still answers 200, the failure is
    logged and counted, and the next step takes the next statement."""
    svc: Service = await make_service(metrics_enabled=True)
    cleanup = _cleanup(svc)
    engine = svc.app.state.service.engine
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE flow_state RENAME TO flow_state_gone")
    try:
        _point_at(cleanup, "flow_state")
        cleanup.interval = 0.0  # each write's step at once (the interval has its own test)
        with _logs() as logs:
            answer = await svc.http.post("/recover", json={"email": "nobody@example.com"})
            await asyncio.wait_for(cleanup.wait_steps(1), 10)
        assert answer.status_code == 200
        assert cleanup.failed == {"flow_state": 1}
        assert any("database cleanup of flow_state failed" in m for m in logs.messages)
        assert 'gotrue_cleanup_failures_total{table="flow_state"} 1.0' in (
            (await svc.http.get("/metrics")).text
        )
        assert (await svc.http.post("/recover", json={"email": "x@example.com"})).status_code == 200
        await asyncio.wait_for(cleanup.wait_steps(2), 10)
        assert cleanup.failed == {"flow_state": 1}  # the next statement ran, and passed
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE flow_state_gone RENAME TO flow_state")


async def test_the_setting_off_means_nothing_runs(make_service: Callable[..., Any]) -> None:
    """GOTRUE_DB_CLEANUP_ENABLED=false: no cleanup, no statement, no metric."""
    svc: Service = await make_service(db_cleanup_enabled=False, metrics_enabled=True)
    assert svc.app.state.cleanup is None
    statements: list[str] = []

    def record(_c: Any, _k: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = svc.app.state.service.engine
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        for _ in range(3):
            answer = await svc.http.post("/recover", json={"email": "nobody@example.com"})
            assert answer.status_code == 200
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    sweeps = {str(s.statements["sqlite"]) for s in stale_row_sweeps(svc.settings)}
    sweeps |= {str(s.statements["postgresql"]) for s in stale_row_sweeps(svc.settings)}
    assert not [s for s in statements if s in sweeps or "set_config('lock_timeout'" in s]
    assert "gotrue_cleanup" not in (await svc.http.get("/metrics")).text


@pytest.mark.postgres
async def test_never_more_than_one_step_in_flight_and_locks_time_out(
    make_service: Callable[..., Any], database_url: str
) -> None:
    """While a step waits on a lock, more writes hand over nothing; the wait ends at
    the timeout, as a logged failure, and the requests were answered meanwhile."""
    if not database_url.startswith("postgres"):
        pytest.skip("PostgreSQL: a table another session holds")
    svc: Service = await make_service()
    cleanup = _cleanup(svc)
    # Long enough that the five writes below are all answered while the first
    # step still waits: a step that timed out meanwhile would let the next write
    # start another (seen under load with 300 ms).
    cleanup.timeout = timedelta(seconds=2)
    _point_at(cleanup, "flow_state")
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE flow_state IN ACCESS EXCLUSIVE MODE")
            with _logs() as logs:
                answers = await asyncio.gather(
                    *(
                        svc.http.post("/recover", json={"email": "nobody@example.com"})
                        for _ in range(5)
                    )
                )
                assert [a.status_code for a in answers] == [200] * 5
                assert not cleanup.failed  # the step still waits on the lock
                assert (
                    cleanup.pool.counters.get(TYPE, Outcome.SUBMITTED) == 1
                )  # one step, the others skipped
                await asyncio.wait_for(cleanup.wait_steps(1), 10)
        assert cleanup.failed == {"flow_state": 1}
        assert any("timeout" in m for m in logs.messages), logs.messages
    finally:
        await holder.close()


# ---------------------------------------------------------------- through uvicorn


async def test_through_uvicorn_a_write_leads_to_a_step(database_url: str, tmp_path: Path) -> None:
    """The real server: a POST answered 200, then a cleanup step removes a stale row."""
    settings = _settings(database_url, security_match_response_times=False, metrics_enabled=True)
    app = await asyncio.to_thread(create_app, settings, transport=RecordingClient())
    engine = app.state.service.engine
    await migrate(engine)
    cleanup: DatabaseCleanup = app.state.cleanup
    _point_at(cleanup, "flow_state")
    stale_id = str(uuid.uuid4())
    async with engine.begin() as conn:
        await conn.execute(
            insert(flow_state).values(
                id=stale_id,
                user_id=None,
                auth_code=str(uuid.uuid4()),
                code_challenge_method="s256",
                code_challenge="x" * 43,
                provider_type="email",
                authentication_method="magiclink",
                created_at=NOW - 48 * HOUR,
                updated_at=NOW - 48 * HOUR,
            )
        )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # Listening already: the client's connection waits in the backlog until the
    # server has started (its lifespan first), so nothing waits for "started".
    sock.listen()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answer = await http.post("/recover", json={"email": "nobody@example.com"})
            assert answer.status_code == 200
            await asyncio.wait_for(cleanup.wait_steps(1), 10)
            metrics = (await http.get("/metrics")).text
        assert 'gotrue_cleanup_affected_rows_total{action="delete",table="flow_state"}' in metrics
        async with engine.connect() as conn:
            gone = (
                await conn.execute(
                    select(func.count()).select_from(flow_state).where(flow_state.c.id == stale_id)
                )
            ).scalar_one()
        assert gone == 0
        assert cleanup.removed["flow_state", "delete"] >= 1
    finally:
        server.should_exit = True
        await serving
        sock.close()
        await engine.dispose()


async def test_a_write_after_shutdown_hands_over_nothing(fresh: AsyncEngine) -> None:
    """A request that ends while the pool is closed (shutdown): no step, no error."""
    cleanup = DatabaseCleanup(fresh, _settings("sqlite:///unused.db"))
    await cleanup.after_request()  # the pool never started: refused, and forgotten
    await cleanup.start()
    await cleanup.aclose()
    await cleanup.after_request()
    assert cleanup.steps == 0 and not cleanup._in_flight


async def test_steps_start_an_interval_apart(fresh: AsyncEngine) -> None:
    """A write just after a step started hands over nothing, even once it finished."""
    cleanup = DatabaseCleanup(fresh, _settings("sqlite:///unused.db"), interval=3600)
    await cleanup.start()
    try:
        await cleanup.after_request()
        await asyncio.wait_for(cleanup.wait_steps(1), 10)
        await cleanup.after_request()  # an hour has not passed
        assert cleanup.pool.counters.get(TYPE, Outcome.SUBMITTED) == 1
        cleanup.interval = 0.0
        cleanup._due = 0.0
        await cleanup.after_request()
        await asyncio.wait_for(cleanup.wait_steps(2), 10)
    finally:
        await cleanup.aclose()

"""The stale-row cleanup's statements: GoTrue's list (``models/cleanup.go``), and ours.

Each :class:`Sweep` is one bounded statement: it picks at most ``limit`` stale
rows by an index (migration 7 adds those it needs; ``tables.STALE_ROW_INDEXES``)
and removes them. On PostgreSQL the pick is ``FOR UPDATE SKIP LOCKED``, as
GoTrue's: a row another transaction holds is left for a later step, so a
cleanup never waits on a request's rows it picks. On SQLite the transaction
holds the write lock (``BEGIN IMMEDIATE``), so the pick and the removal see
the same rows, and rows go by ``rowid``.

What goes, and when (``at`` is the step's time; "its lifetime" is the
setting that bounds a row's use, so nothing still usable is ever removed):

========================== ======================================================
refresh_tokens             revoked, untouched for 24 h: deleted (GoTrue)
refresh_tokens             of sessions past ``not_after`` + 24 h: revoked (GoTrue)
sessions                   past ``not_after`` + 72 h: deleted, 10 at a time, as
                           their refresh tokens go with them (GoTrue)
flow_state                 created more than its lifetime + 24 h ago (GoTrue: 24 h)
mfa_challenges             created more than their lifetime + 24 h ago (GoTrue:
                           24 h); the phone code's hash goes with the row
mfa_factors                unverified, created more than 24 h ago (GoTrue)
verify_attempts            ours: a count untouched for the longest code lifetime
                           + 24 h (the code it counted has expired)
one_time_tokens            ours: a code sent more than the longest code lifetime
                           + 24 h ago; its hash is blanked on the user's row too
========================== ======================================================

GoTrue's SAML relay states have no table here. A session started under
``GOTRUE_SESSIONS_TIMEBOX`` stores its end as ``not_after``, so the two
``not_after`` statements remove it; GoTrue, whose sessions do not store it,
adds a statement on ``created_at`` plus the timebox instead. A session idle
past ``GOTRUE_SESSIONS_INACTIVITY_TIMEOUT`` has no statement here (it goes
at its ``not_after``, if it has one): finding it by index would need one on
``refreshed_at``. The e-mail allowance (``email_rate_limits``) is one row
per allowance, never stale; the per-address limits live in memory.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, text, update

from apitask_auth.accounts.users import TOKEN_COLUMNS
from apitask_auth.storage.db import BACKENDS, Backend, backend
from apitask_auth.storage.tables import REVOKED, UNVERIFIED, UTCDateTime, users

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from sqlalchemy.sql.elements import TextClause

    from apitask_auth.config import Settings

__all__ = ["DAY", "Sweep", "run_sweep", "stale_row_sweeps"]

DAY = timedelta(hours=24)
"""GoTrue's grace after a row stops being usable, before it is removed."""

_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Sweep:
    """One bounded cleanup statement.

    Attributes:
        table: the table whose rows it removes (or revokes).
        action: ``"delete"`` or ``"revoke"`` (the metric's label).
        age: how old a row must be: the statement's ``:cutoff`` is ``at - age``.
        statements: the SQL by backend (binds ``:cutoff``, and ``:now`` for a revoke).
            For ``one_time_tokens``, the pick only: :func:`run_sweep` removes.
    """

    table: str
    action: str
    age: timedelta
    statements: dict[Backend, TextClause]


def _timed(sql: str) -> TextClause:
    """``sql`` with its times typed, so SQLite compares them in the stored form."""
    names = [name for name in ("cutoff", "now") if f":{name}" in sql]
    return text(sql).bindparams(*(bindparam(name, type_=UTCDateTime()) for name in names))


def _by_backend(
    template: str, *, lock: str = "FOR UPDATE SKIP LOCKED"
) -> dict[Backend, TextClause]:
    """``template`` for each backend: ``{key}`` is ``id`` (PostgreSQL) or ``rowid``
    (SQLite), ``{lock}`` the row lock (PostgreSQL only), ``{revoked}`` the partial
    index's own text (tables.REVOKED), ``{cross}`` SQLite's fixed join order."""
    keys = {"postgresql": "id", "sqlite": "rowid"}
    return {
        on: _timed(
            template.format(
                key=keys[on],
                lock=lock if on == "postgresql" else "",
                revoked=REVOKED[on],
                limit=_LIMIT,
                # SQLite without statistics may drive a join from the wrong side;
                # CROSS JOIN fixes its order (the first table outermost).
                cross="CROSS " if on == "sqlite" else "",
            )
        )
        for on in BACKENDS
    }


def _delete(table: str, where: str, *, limit: int = _LIMIT) -> dict[Backend, TextClause]:
    return _by_backend(
        f"DELETE FROM {table} WHERE {{key}} IN "
        f"(SELECT {{key}} FROM {table} WHERE {where} LIMIT {limit} {{lock}})"
    )


def stale_row_sweeps(settings: Settings) -> tuple[Sweep, ...]:
    """Every cleanup statement, in the order the steps take them."""
    # A count or a code row outlives no code: the longest any code may be used.
    code_life = max(settings.otp_exp, settings.sms_code_exp, settings.mfa_challenge_expiry)
    attempts: dict[Backend, TextClause] = {
        "postgresql": _timed(
            "DELETE FROM verify_attempts WHERE (user_id, token_type) IN "
            "(SELECT user_id, token_type FROM verify_attempts WHERE updated_at < :cutoff "
            f"LIMIT {_LIMIT} FOR UPDATE SKIP LOCKED)"
        ),
        "sqlite": _delete("verify_attempts", "updated_at < :cutoff")["sqlite"],
    }
    return (
        Sweep(
            "refresh_tokens",
            "delete",
            DAY,
            _delete("refresh_tokens", "{revoked} AND updated_at < :cutoff"),
        ),
        Sweep(
            "refresh_tokens",
            "revoke",
            DAY,
            _by_backend(
                "UPDATE refresh_tokens SET revoked = true, updated_at = :now WHERE {key} IN "
                "(SELECT refresh_tokens.{key} FROM sessions {cross}JOIN refresh_tokens "
                "ON refresh_tokens.session_id = sessions.id "
                "WHERE sessions.not_after < :cutoff AND refresh_tokens.revoked = false "
                "LIMIT {limit} {lock})",
                lock="FOR UPDATE OF refresh_tokens SKIP LOCKED",
            ),
        ),
        # Ten at a time: each takes its refresh tokens with it (ON DELETE CASCADE).
        Sweep("sessions", "delete", 3 * DAY, _delete("sessions", "not_after < :cutoff", limit=10)),
        Sweep(
            "flow_state",
            "delete",
            settings.flow_state_expiry + DAY,
            _delete("flow_state", "created_at < :cutoff"),
        ),
        Sweep(
            "mfa_challenges",
            "delete",
            settings.mfa_challenge_expiry + DAY,
            _delete("mfa_challenges", "created_at < :cutoff"),
        ),
        Sweep(
            "mfa_factors",
            "delete",
            DAY,
            _delete("mfa_factors", f"{UNVERIFIED} AND created_at < :cutoff"),
        ),
        Sweep("verify_attempts", "delete", code_life + DAY, attempts),
        Sweep(
            "one_time_tokens",
            "delete",
            code_life + DAY,
            # The user's row is locked with the code's (PostgreSQL): its column is
            # blanked in the same transaction, and a row a request holds is skipped
            # rather than waited for (requests lock one_time_tokens, then users).
            _by_backend(
                "SELECT one_time_tokens.id, one_time_tokens.user_id, "
                "one_time_tokens.token_type, one_time_tokens.token_hash "
                "FROM one_time_tokens JOIN users ON users.id = one_time_tokens.user_id "
                "WHERE one_time_tokens.updated_at < :cutoff LIMIT {limit} {lock}"
            ),
        ),
    )


async def run_sweep(engine: AsyncEngine, sweep: Sweep, at: datetime, *, timeout: timedelta) -> int:
    """Run ``sweep`` in a transaction of its own; the rows it removed (or revoked).

    On PostgreSQL the transaction waits for no lock, and runs for no longer
    than ``timeout`` (it fails instead). On SQLite it waits for the write lock
    as any writer does (the connection's busy timeout).
    """
    async with engine.begin() as conn:
        on = backend(conn)
        if on == "postgresql":
            limit = str(int(timeout.total_seconds() * 1000))
            await conn.execute(
                text(
                    "SELECT set_config('lock_timeout', :limit, true), "
                    "set_config('statement_timeout', :limit, true)"
                ),
                {"limit": limit},
            )
        params = {"cutoff": at - sweep.age, "now": at}
        if sweep.table == "one_time_tokens":
            return await _drop_codes(conn, sweep.statements[on], params)
        result = await conn.execute(sweep.statements[on], params)
        return result.rowcount


_DROP_CODES = text("DELETE FROM one_time_tokens WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)


async def _drop_codes(conn: AsyncConnection, pick: TextClause, params: dict[str, datetime]) -> int:
    """Delete the picked codes, and blank each one's hash on its user's row (if still
    that code: the column mirrors the row, users.set_one_time_token)."""
    picked = (await conn.execute(pick, params)).all()
    if not picked:
        return 0
    by_column: defaultdict[str, list[dict[str, str]]] = defaultdict(list)
    for row in picked:
        column = TOKEN_COLUMNS[row.token_type]
        by_column[column].append({"user": row.user_id, "hash": row.token_hash})
    await conn.execute(_DROP_CODES, {"ids": [row.id for row in picked]})
    for column, rows in by_column.items():
        await conn.execute(
            update(users)
            .where(users.c.id == bindparam("user"))
            .where(users.c[column] == bindparam("hash"))
            .values({column: None}),
            rows,
        )
    return len(picked)

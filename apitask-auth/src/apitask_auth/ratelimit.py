"""GoTrue's rate limits (§1.7): the global e-mail allowance and the per-IP request limits.

The e-mail allowance (``GOTRUE_RATE_LIMIT_EMAIL_SENT``) is a row in the
database, taken with one atomic ``UPDATE ... RETURNING``: every process that
shares the database draws from the same allowance, where GoTrue keeps one per
process. A plain ``N`` is N per hour in fixed windows (aligned to whole hours
since the epoch, so all processes agree on the window); ``N/duration`` is a
token bucket of N refilled one token per duration.

The per-IP limits only apply when ``GOTRUE_RATE_LIMIT_HEADER`` names the header
that carries the client's address, as in GoTrue; they are kept in memory, per
process, as GoTrue keeps them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import case, update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from starlette.requests import Request

from .db import email_rate_limits, upsert
from .errors import APIError, error_response

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from starlette.types import ASGIApp, Receive, Scope, Send

    from .config import EmailRateLimit, Settings

__all__ = [
    "IPRateLimitMiddleware",
    "TokenBucket",
    "take_email_allowance",
]

_HOUR = 3600.0


def _over_email_limit() -> APIError:
    return APIError(429, "over_email_send_rate_limit", "email rate limit exceeded")


async def _ensure_row(conn: AsyncConnection, name: str, limit: EmailRateLimit, at: float) -> None:
    table = email_rate_limits
    values = {"name": name, "window_id": 0, "amount": limit.count, "updated_at": at}
    if name == "window":
        values |= {"window_id": int(at // _HOUR), "amount": 0.0}
    await conn.execute(upsert(conn, table).values(**values).on_conflict_do_nothing())


async def _take(conn: AsyncConnection, limit: EmailRateLimit, at: float) -> bool:
    """Take one mail from the allowance in one statement; False when there is none left."""
    table = email_rate_limits
    name = "window" if limit.every is None else "bucket"
    await _ensure_row(conn, name, limit, at)
    if limit.every is None:
        current = int(at // _HOUR)
        fresh_window = table.c.window_id != current
        statement = (
            update(table)
            .where(table.c.name == name)
            .where((fresh_window & (limit.count >= 1)) | (table.c.amount + 1 <= limit.count))
            .values(
                window_id=current,
                amount=case((fresh_window, 1.0), else_=table.c.amount + 1),
                updated_at=at,
            )
        )
    else:
        refilled = table.c.amount + (at - table.c.updated_at) / limit.every.total_seconds()
        available = case((refilled > limit.count, limit.count), else_=refilled)
        statement = (
            update(table)
            .where(table.c.name == name)
            .where(available >= 1)
            .values(amount=available - 1, updated_at=at)
        )
    taken = await conn.execute(statement.returning(table.c.amount))
    return taken.first() is not None


# Per database URL, an engine without a pool for taking the allowance (see below).
_allowance_engines: dict[str, AsyncEngine] = {}


def _allowance_engine(engine: AsyncEngine) -> AsyncEngine:
    key = engine.url.render_as_string(hide_password=False)
    if key not in _allowance_engines:
        _allowance_engines[key] = create_async_engine(engine.url, poolclass=NullPool)
    return _allowance_engines[key]


async def take_email_allowance(
    conn: AsyncConnection, settings: Settings, *, at: float | None = None
) -> None:
    """Spend one unit of ``GOTRUE_RATE_LIMIT_EMAIL_SENT`` for one send (§1.7).

    0 refuses every send; otherwise the limit is skipped under autoconfirm, as
    GoTrue does. On PostgreSQL the unit is taken in a short transaction of its
    own, so the row lock is not held while the flow (and an inline mail) runs.
    That transaction gets a connection of its own, outside the service's pool:
    a flow holding a pooled connection while waiting for a second one from the
    same pool could wait forever once every pooled connection is held that way.
    SQLite has one writer anyway, so the flow's own transaction is used.

    Raises:
        APIError: 429 ``over_email_send_rate_limit`` when the allowance is spent.
    """
    limit = settings.rate_limit_email_sent
    if limit.count == 0:
        raise _over_email_limit()
    if settings.mailer_autoconfirm:
        return
    now = time.time() if at is None else at
    if conn.dialect.name == "postgresql":
        async with _allowance_engine(conn.engine).begin() as own:
            allowed = await _take(own, limit, now)
    else:
        allowed = await _take(conn, limit, now)
    if not allowed:
        raise _over_email_limit()


@dataclass(slots=True)
class TokenBucket:
    """Per-key token buckets: ``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        """Take a token for ``key`` if it has one."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > 10_000:
            self._forget_full(now)
        return True

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: forget it.
        full = [
            key
            for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]


_FIVE_MINUTES = 300.0


class IPRateLimitMiddleware:
    """GoTrue's per-IP request limits, keyed by ``GOTRUE_RATE_LIMIT_HEADER`` (§1.7).

    Requests without that header's value are not limited (GoTrue does the same).
    Over a limit: 429 ``over_request_rate_limit``.
    """

    def __init__(
        self, app: ASGIApp, settings: Settings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.header = settings.rate_limit_header.lower().encode()
        self.clock = clock
        otp = TokenBucket(settings.rate_limit_otp / _FIVE_MINUTES, 30)
        verify = TokenBucket(settings.rate_limit_verify / _FIVE_MINUTES, 30)
        token = TokenBucket(settings.rate_limit_token_refresh / _FIVE_MINUTES, 30)
        self.limits: dict[tuple[str, str], TokenBucket] = {
            ("POST", "/signup"): otp,
            ("POST", "/recover"): otp,
            ("POST", "/resend"): otp,
            ("POST", "/magiclink"): otp,
            ("POST", "/otp"): otp,
            ("PUT", "/user"): otp,
            ("GET", "/verify"): verify,
            ("POST", "/verify"): verify,
            ("POST", "/token"): token,
        }

    def _key(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == self.header:
                return str(value.decode("latin-1").split(",")[0].strip())
        return ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.header:
            bucket = self.limits.get((scope["method"], scope["path"]))
            key = self._key(scope) if bucket is not None else ""
            if bucket is not None and key and not bucket.allow(key, self.clock()):
                error = APIError(429, "over_request_rate_limit", "Request rate limit reached")
                response = error_response(Request(scope), error)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

"""GoTrue's rate limits (§1.7): the global send allowances and the per-IP request limits.

The e-mail allowance (``GOTRUE_RATE_LIMIT_EMAIL_SENT``) and the SMS allowance
(``GOTRUE_RATE_LIMIT_SMS_SENT``) are each a row in the database, taken with
one atomic ``UPDATE ... RETURNING``: every process that shares the database
draws from the same allowance, where GoTrue keeps one per process. A plain
``N`` is N per hour in fixed windows (aligned to whole hours since the epoch,
so all processes agree on the window); ``N/duration`` is a token bucket of N
refilled one token per duration. :class:`Allowance` names one of them.

The per-IP limits only apply when ``GOTRUE_RATE_LIMIT_HEADER`` names the header
that carries the client's address, as in GoTrue; they are kept in memory, per
process, as GoTrue keeps them. Which part of that header is the key is
``GOTRUE_RATE_LIMIT_TRUSTED_PROXIES``'s business (see :func:`client_key`). Each
limit is a FastAPI dependency (:meth:`RequestLimits.limit`) that the route
table (:mod:`apitask_auth.routes`) names on the routes it limits.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Depends, Request, params
from sqlalchemy import BigInteger, Float, bindparam, case
from sqlalchemy.exc import DBAPIError

from apitask_auth.errors import APIError, ErrorCode, too_many_requests
from apitask_auth.storage.db import BACKENDS, backend, engine_like, upsert
from apitask_auth.storage.tables import email_rate_limits

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Callable

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from sqlalchemy.sql.expression import Executable

    from apitask_auth.config import EmailRateLimit, Settings
    from apitask_auth.storage.db import Backend

__all__ = [
    "RequestLimits",
    "TokenBucket",
    "client_key",
    "Allowance",
    "EMAIL_ALLOWANCE",
    "SMS_ALLOWANCE",
    "dispose_allowance",
    "take_allowance",
    "take_email_allowance",
    "take_sms_allowance",
]

_HOUR = 3600.0


def _over_email_limit(request: Request | None) -> APIError:
    """The refusal, counted where it happens for ``gotrue_email_rate_limit_counter``
    under the request's path, as GoTrue counts it (§1.7)."""
    if request is not None:
        # ServiceMetrics's counter when /metrics is on, else None (app.py sets it).
        refusals: Counter[str] | None = request.app.state.email_refusals
        if refusals is not None:
            refusals[request.url.path] += 1
    return too_many_requests(ErrorCode.OVER_EMAIL_SEND_RATE_LIMIT, "email rate limit exceeded")


@dataclass(frozen=True, slots=True)
class Allowance:
    """One global send allowance: its rows' names (one per kind of limit) and its refusal."""

    window_row: str
    bucket_row: str
    refusal: Callable[[Request | None], APIError]


EMAIL_ALLOWANCE = Allowance("window", "bucket", _over_email_limit)
"""``GOTRUE_RATE_LIMIT_EMAIL_SENT`` (its rows kept the names they had before SMS)."""

SMS_ALLOWANCE = Allowance(
    "sms_window",
    "sms_bucket",
    lambda _request: too_many_requests(
        ErrorCode.OVER_SMS_SEND_RATE_LIMIT, "SMS rate limit exceeded"
    ),
)
"""``GOTRUE_RATE_LIMIT_SMS_SENT``: GoTrue's answer, 429 ``over_sms_send_rate_limit``."""


def _take_statement(on: Backend, bucket: bool) -> Executable:
    """Take one unit in one statement: create the row spent by one, or spend one from it.

    An upsert whose update has a condition: the row comes back (RETURNING)
    exactly when a unit was taken. Parameters: ``name`` (the row), ``at``
    (seconds since the epoch), ``count``, and ``window`` (the hour's number)
    or ``every`` (seconds).
    """
    table = email_rate_limits
    name = bindparam("name", type_=table.c.name.type)
    at, count = bindparam("at", type_=Float), bindparam("count", type_=Float)
    if bucket:
        refilled = table.c.amount + (at - table.c.updated_at) / bindparam("every", type_=Float)
        available = case((refilled > count, count), else_=refilled)
        # A new bucket starts full, less this unit.
        fresh = {"name": name, "window_id": 0, "amount": count - 1, "updated_at": at}
        spend = {"amount": available - 1, "updated_at": at}
        allowed = available >= 1
    else:
        window = bindparam("window", type_=BigInteger)
        fresh_window = table.c.window_id != window
        fresh = {"name": name, "window_id": window, "amount": 1.0, "updated_at": at}
        spend = {
            "window_id": window,
            "amount": case((fresh_window, 1.0), else_=table.c.amount + 1),
            "updated_at": at,
        }
        allowed = fresh_window | (table.c.amount + 1 <= count)
    return (
        upsert(on, table)
        .values(fresh)
        .on_conflict_do_update(index_elements=[table.c.name], set_=spend, where=allowed)
        .returning(table.c.amount)
    )


# Built once per database and kind: only the parameters change from one mail to the next.
_TAKE = {(on, bucket): _take_statement(on, bucket) for on in BACKENDS for bucket in (False, True)}


async def _take(
    conn: AsyncConnection, allowance: Allowance, limit: EmailRateLimit, at: float
) -> bool:
    """Take one send from the allowance; False when there is none left.

    The caller has refused a ``count`` below 1, which the statements assume.
    """
    params: dict[str, float | str] = {"at": at, "count": limit.count}
    if limit.every is None:
        params["name"] = allowance.window_row
        params["window"] = int(at // _HOUR)
    else:
        params["name"] = allowance.bucket_row
        params["every"] = limit.every.total_seconds()
    taken = await conn.execute(_TAKE[backend(conn), limit.every is not None], params)
    return taken.first() is not None


# Per service engine (PostgreSQL), the small engine that takes the allowance (see below).
_allowance_engines: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = (
    weakref.WeakKeyDictionary()
)


def _allowance_engine(engine: AsyncEngine) -> AsyncEngine:
    own = _allowance_engines.get(engine)
    if own is None:
        # One statement is its own transaction (autocommit): one round trip per
        # mail. Pooled, so a mail does not pay for a new connection; not pinged
        # before each use (a second round trip): a dropped connection is retried.
        own = engine_like(engine, isolation_level="AUTOCOMMIT", pool_size=2, max_overflow=8)
        _allowance_engines[engine] = own
    return own


async def dispose_allowance(engine: AsyncEngine) -> None:
    """Close the connections that took ``engine``'s allowance (at shutdown; none on SQLite)."""
    own = _allowance_engines.pop(engine, None)
    if own is not None:
        await own.dispose()


async def take_email_allowance(
    conn: AsyncConnection,
    settings: Settings,
    *,
    request: Request | None = None,
    at: float | None = None,
) -> None:
    """Spend one unit of ``GOTRUE_RATE_LIMIT_EMAIL_SENT`` for one send (§1.7).

    0 refuses every send; otherwise the limit is skipped under autoconfirm, as
    GoTrue does. A refusal is counted for /metrics under ``request``'s path
    (not counted without a request). See :func:`take_allowance`.

    Raises:
        APIError: 429 ``over_email_send_rate_limit`` when the allowance is spent.
    """
    limit = settings.rate_limit_email_sent
    if settings.mailer_autoconfirm and limit.count != 0:
        return
    await take_allowance(conn, EMAIL_ALLOWANCE, limit, request=request, at=at)


async def take_sms_allowance(
    conn: AsyncConnection,
    settings: Settings,
    *,
    request: Request | None = None,
    at: float | None = None,
) -> None:
    """Spend one unit of ``GOTRUE_RATE_LIMIT_SMS_SENT`` for one phone request.

    GoTrue takes it in a middleware, for each request to a sending endpoint
    whose body names a phone, unless ``GOTRUE_SMS_AUTOCONFIRM`` is on; so do
    the phone flows, before they look the number up, so that a known and an
    unknown number spend alike. See :func:`take_allowance`.

    Raises:
        APIError: 429 ``over_sms_send_rate_limit`` when the allowance is spent.
    """
    if settings.sms_autoconfirm:
        return
    await take_allowance(conn, SMS_ALLOWANCE, settings.rate_limit_sms_sent, request=request, at=at)


async def take_allowance(
    conn: AsyncConnection,
    allowance: Allowance,
    limit: EmailRateLimit,
    *,
    request: Request | None = None,
    at: float | None = None,
) -> None:
    """Spend one unit of ``allowance`` (``limit`` says how much it holds).

    On PostgreSQL the unit is taken in a statement of its own, on a
    connection of its own, so the row lock is not held while the flow (and
    an inline send) runs. That connection comes from a small pool of its own,
    outside the service's pool: a flow holding a pooled connection while
    waiting for a second one from the same pool could wait forever once every
    pooled connection is held that way; an allowance connection is held for
    one statement only. SQLite has one writer anyway, so the flow's own
    transaction is used.

    Raises:
        APIError: the allowance's refusal when nothing is left (always for
            a ``count`` below 1).
    """
    if limit.count < 1:  # 0, or a fraction of a send: no whole unit can ever be taken
        raise allowance.refusal(request)
    now = time.time() if at is None else at
    if backend(conn) == "postgresql":
        taken = await _take_on_own_connection(_allowance_engine(conn.engine), allowance, limit, now)
    else:
        taken = await _take(conn, allowance, limit, now)
    if not taken:
        raise allowance.refusal(request)


async def _take_on_own_connection(
    engine: AsyncEngine, allowance: Allowance, limit: EmailRateLimit, at: float
) -> bool:
    """:func:`_take` on a pooled connection, once more on a fresh one if that one was dead.

    A pooled connection can have died since its last use (a server restart,
    an idle timeout); SQLAlchemy then discards the pool's connections and we
    retry. Should the statement have run before the connection broke, the
    retry takes a second unit: the allowance errs on the side of fewer mails.
    """
    try:
        async with engine.connect() as own:
            return await _take(own, allowance, limit, at)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
    async with engine.connect() as own:
        return await _take(own, allowance, limit, at)


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


def client_key(values: list[str], trusted_proxies: int) -> str:
    """The per-IP limit's key, from the rate-limit header's values (one per header line).

    With no trusted proxy (0, the default) the key is the first header line as
    a whole, as GoTrue's ``req.Header.Get`` takes it: right when the header
    is set by the one proxy in front (``X-Real-IP``), not when a proxy appends
    to ``X-Forwarded-For``, whose first values the client writes.

    With ``trusted_proxies`` = N the lines are read as one comma-separated
    list (as HTTP joins repeated headers) and the key is its N-th address
    from the right: the one the outermost of the N proxies saw connect. Each
    proxy appends the address it saw, so nothing to the right of it comes
    from the client; to its left is whatever the client sent. A list shorter
    than N (a request that reached us through fewer proxies than configured)
    is keyed on its leftmost address, the furthest we know.
    """
    if not values:
        return ""
    if not trusted_proxies:
        return values[0].strip()
    # Empty items are skipped: a proxy always appends an address, a client may
    # send "a," to shift the count.
    hops = [hop.strip() for hop in ",".join(values).split(",") if hop.strip()]
    if not hops:
        return ""
    return hops[-min(trusted_proxies, len(hops))]


class RequestLimits:
    """GoTrue's per-IP request limits of one app, keyed by ``GOTRUE_RATE_LIMIT_HEADER`` (§1.7).

    :meth:`limit` makes one limit: a dependency for the routes it limits.
    Requests without that header's value are not limited (GoTrue does the
    same); with no header configured nothing is. The key is :func:`client_key`
    of the header (``GOTRUE_RATE_LIMIT_TRUSTED_PROXIES``).
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.header = settings.rate_limit_header
        self.trusted_proxies = settings.rate_limit_trusted_proxies
        self.clock = clock

    def limit(self, per_five_minutes: float) -> params.Depends:
        """A limit of ``per_five_minutes`` requests per client, in bursts of up to 30.

        One bucket per call: every route given the returned dependency draws
        from it. Over the limit: 429 ``over_request_rate_limit``.
        """
        return self._depends(TokenBucket(per_five_minutes / _FIVE_MINUTES, 30))

    def limit_per_minute(self, per_minute: float) -> params.Depends:
        """A limit of ``per_minute`` requests per client, in bursts of up to 30
        (GoTrue's MFA challenge and verify limiters); otherwise as :meth:`limit`."""
        return self._depends(TokenBucket(per_minute / 60, 30))

    def limit_per_hour(self, per_hour: float) -> params.Depends:
        """A limit of ``per_hour`` requests per client, in bursts of up to ``per_hour``
        (GoTrue's limiter for anonymous sign-ins); otherwise as :meth:`limit`."""
        return self._depends(TokenBucket(per_hour / _HOUR, per_hour))

    def _depends(self, bucket: TokenBucket) -> params.Depends:
        async def per_ip_limit(request: Request) -> None:
            if not self.header:
                return
            key = client_key(request.headers.getlist(self.header), self.trusted_proxies)
            if key and not bucket.allow(key, self.clock()):
                raise too_many_requests(
                    ErrorCode.OVER_REQUEST_RATE_LIMIT, "Request rate limit reached"
                )

        limit: params.Depends = Depends(per_ip_limit)
        return limit

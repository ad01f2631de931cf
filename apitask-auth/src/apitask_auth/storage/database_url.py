"""``DATABASE_URL``: what the service accepts, read once, used by every connection.

GoTrue (pgx) reads libpq connection URLs, and Supabase's own compose files
write ``postgres://user:pass@db:5432/postgres?sslmode=disable``. SQLAlchemy's
asyncpg dialect would pass each query parameter to ``asyncpg.connect`` as a
keyword (``sslmode=`` is none), so the engine and the outbox both connect
through asyncpg's own DSN parser, which follows libpq for the parameters kept
here. Anything else stops the start with one line naming ``DATABASE_URL``.

Accepted parameters (PostgreSQL):

- ``sslmode``: disable, allow, prefer (the default), require, verify-ca, verify-full;
- ``sslrootcert``, ``sslcert``, ``sslkey``: file paths, as libpq;
- ``application_name``, ``search_path``: sent as server settings at connect;
- ``connect_timeout``: seconds to wait for the server (libpq's meaning; 0 or
  absent: asyncpg's default of 60 s). The service's own engine honours it;
  the outbox's connections (and ``apitask-auth worker``) use asyncpg's default.

SQLite URLs (``sqlite:///relative.db``, ``sqlite:////absolute.db``) take none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["SSL_MODES", "DatabaseURL", "parse_database_url"]

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SCHEMES: dict[str, Literal["postgresql", "sqlite"]] = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "postgresql+asyncpg": "postgresql",
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
}
# Read by asyncpg's DSN parser as libpq does (the ssl* ones), or sent as
# server settings (any other name asyncpg does not know; these two are GUCs).
_DSN_PARAMETERS = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "search_path"}
)
_PARAMETERS = _DSN_PARAMETERS | {"connect_timeout"}


@dataclass(frozen=True)
class DatabaseURL:
    """A usable ``DATABASE_URL``.

    Attributes:
        backend: which database it names.
        url: for SQLite, ``sqlite:///path``; for PostgreSQL, a ``postgresql://``
            DSN that ``asyncpg.connect`` (and the outbox's ``open_store``) reads.
        connect_timeout: ``connect_timeout`` in seconds, None when unset or 0.
    """

    backend: Literal["postgresql", "sqlite"]
    url: str
    connect_timeout: float | None = field(default=None)


def parse_database_url(value: str) -> DatabaseURL:
    """Check ``value`` and say how to connect with it.

    Raises:
        ValueError: the URL is not one the service can use; the message says
            why without repeating the URL (it may hold a password).
    """
    scheme, sep, rest = value.partition("://")
    backend = _SCHEMES.get(scheme.lower()) if sep else None
    if backend is None:
        raise ValueError("expected a sqlite:///path or postgres://user@host/db URL")
    parts = urlsplit(f"x://{rest}")
    if backend == "sqlite":
        if parts.query:
            raise ValueError("a sqlite URL takes no query parameters")
        return DatabaseURL("sqlite", f"sqlite://{rest}")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("the query string is malformed") from None
    params: dict[str, str] = {}
    for name, item in pairs:
        if name not in _PARAMETERS:
            known = ", ".join(sorted(_PARAMETERS))
            raise ValueError(f"unknown query parameter {name!r} (accepted: {known})")
        if name in params:
            raise ValueError(f"query parameter {name!r} given twice")
        params[name] = item
    if "sslmode" in params and params["sslmode"] not in SSL_MODES:
        raise ValueError(
            f"sslmode must be one of {', '.join(SSL_MODES)}, got {params['sslmode']!r}"
        )
    timeout = None
    if "connect_timeout" in params:
        raw = params.pop("connect_timeout")
        if not raw.isdigit():
            raise ValueError(f"connect_timeout must be a whole number of seconds, got {raw!r}")
        # libpq: 0 waits forever, and anything below 2 s counts as 2 s.
        timeout = float(max(int(raw), 2)) if int(raw) else None
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(params), ""))
    return DatabaseURL("postgresql", dsn, timeout)

"""From a Django database alias to what the outbox needs: its URL and dialect."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from django.core.exceptions import ImproperlyConfigured
from django.db import connections

__all__ = ["database_url", "dialect_of", "url_for"]

# Django's vendor names are the outbox's dialect names.
_DIALECTS = ("sqlite", "postgresql")


def dialect_of(alias: str, vendor: str) -> str:
    """``"sqlite"`` or ``"postgresql"``: the outbox dialect of ``DATABASES[alias]``,
    a ``vendor`` database (Django's ``connection.vendor``).

    Raises:
        ImproperlyConfigured: the database is neither (MySQL, Oracle...).
    """
    if vendor not in _DIALECTS:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}] is {vendor}; the apitask outbox runs on SQLite or "
            "PostgreSQL: point APITASK['DATABASE'] at one of those"
        )
    return vendor


def url_for(alias: str, vendor: str, config: dict[str, Any]) -> str:
    """The outbox URL for ``DATABASES[alias]`` (``config``), a ``vendor`` database.

    Raises:
        ImproperlyConfigured: an unsupported engine, or an in-memory SQLite
            database (workers in other processes could never see its jobs).
    """
    dialect = dialect_of(alias, vendor)
    name = str(config.get("NAME") or "")
    if dialect == "sqlite":
        if not name or name == ":memory:" or name.startswith("file:"):
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}]['NAME'] is {name!r}: the outbox needs a SQLite file "
                "that the worker process can open too; give it a path"
            )
        return f"sqlite:///{name}"
    user = quote(str(config.get("USER") or ""), safe="")
    password = quote(str(config.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = str(config.get("HOST") or "")
    port = str(config.get("PORT") or "")
    database = quote(name, safe="")
    if host.startswith("/"):  # a Unix socket's directory: no URL host, a query parameter
        query = urlencode({"host": host, "port": port} if port else {"host": host})
        return f"postgresql://{credentials}/{database}?{query}"
    where = f"{host}:{port}" if port else host
    return f"postgresql://{credentials}{where}/{database}"


def database_url(alias: str) -> str:
    """The outbox URL for the database Django knows as ``alias`` (see :func:`url_for`)."""
    conn = connections[alias]
    return url_for(alias, conn.vendor, conn.settings_dict)

"""The access log without secrets: one-time codes and tokens out of logged query strings.

uvicorn writes one line per request on the ``uvicorn.access`` logger, with the
path and its query string as the client sent it. ``GET /verify?token=...``
(the link in every mail) would put a live code or token hash in the log,
which then works for anyone who reads it. :class:`AccessLogRedaction` replaces
the value of every secret parameter (:data:`SECRET_PARAMETERS`) with
``REDACTED``; the parameter's name and the rest of the line stay.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_plus

__all__ = ["SECRET_PARAMETERS", "AccessLogRedaction", "redact_access_log", "redact_query"]

SECRET_PARAMETERS = frozenset(
    {
        # What GoTrue's endpoints take in a query string and must not be replayed...
        "token",
        "token_hash",
        "code",
        "auth_code",
        "code_verifier",
        "nonce",
        "refresh_token",
        "access_token",
        "provider_token",
        "provider_refresh_token",
        "password",
        # ... and who it is for: logs name a mail's domain, never its address.
        "email",
        "phone",
    }
)
"""Query parameters whose values the access log does not show (names compared lowercased)."""

REDACTED = "REDACTED"


def redact_query(target: str) -> str:
    """``target`` (a path with its query string) with every secret parameter's value replaced."""
    path, question, query = target.partition("?")
    if not question:
        return target
    items = []
    for item in query.split("&"):
        name, equals, _ = item.partition("=")
        if equals and unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            item = f"{name}={REDACTED}"
        items.append(item)
    return f"{path}?{'&'.join(items)}"


class AccessLogRedaction(logging.Filter):
    """Redacts the request target of uvicorn's access log records; never drops one.

    uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` with the target as the third
    argument (h11 and httptools alike); any other record passes unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's target argument, if it has one."""
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_query(args[2]), args[3], args[4])
        return True


def redact_access_log(logger: logging.Logger | None = None) -> None:
    """Put :class:`AccessLogRedaction` on ``logger`` (``uvicorn.access``), once.

    On the logger itself, not a handler: the record is changed before any
    handler sees it, whichever handlers the embedding program set up.
    """
    target = logger or logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, AccessLogRedaction) for existing in target.filters):
        target.addFilter(AccessLogRedaction())

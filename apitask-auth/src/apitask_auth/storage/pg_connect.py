"""Opening a PostgreSQL connection: a full server is waited out, not answered with a 500.

A pool opens connections when requests come faster than its idle ones serve
them: the engine's pool grows from its 5 kept connections up to 15 under a
burst, the e-mail allowance's from 2 up to 10 (ratelimit.py). A server at
``max_connections`` (shared with other services) refuses such a connection at
once with SQLSTATE 53300 ``too_many_connections`` ("sorry, too many clients
already", or a database's or role's ``CONNECTION LIMIT``): left alone, that
refusal became the request's 500 ``unexpected_failure``, while a slot would
free within moments (any client's connection closing: our own pools close
their burst connections as soon as they are returned).

So a refused connection is tried again, with growing pauses, for as long as
the request would wait for a pooled connection (SQLAlchemy's ``pool_timeout``,
30 s); past that the refusal is raised and the request fails as before. The
first refusal of each attempt is logged at WARNING: a server that keeps
refusing needs a bigger ``max_connections`` or fewer clients.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg

__all__ = ["FULL_SERVER_WAIT", "connect"]

logger = logging.getLogger("apitask_auth")

FULL_SERVER_WAIT = 30.0
"""Seconds to keep trying a server that refuses connections for being full:
SQLAlchemy's default ``pool_timeout``, the wait a request accepts for a pooled one."""
_FIRST_PAUSE = 0.05
_LONGEST_PAUSE = 1.0


async def connect(
    dsn: str, *, wait: float = FULL_SERVER_WAIT, **kwargs: Any
) -> asyncpg.Connection[Any]:
    """``asyncpg.connect(dsn, **kwargs)``, retried while the server is full, for ``wait`` s.

    Raises:
        asyncpg.TooManyConnectionsError: the server still refused after ``wait`` seconds.
    """
    deadline = time.monotonic() + wait
    pause = _FIRST_PAUSE
    warned = False
    while True:
        try:
            return await asyncpg.connect(dsn, **kwargs)
        except asyncpg.TooManyConnectionsError as refused:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            if not warned:
                warned = True
                logger.warning(
                    "PostgreSQL refused a new connection (%s); trying again for up to %.0f s",
                    refused,
                    left,
                )
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, _LONGEST_PAUSE)

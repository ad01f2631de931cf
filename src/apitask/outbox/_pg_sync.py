"""Sync enqueues with no connection of the caller's, on PostgreSQL: reused psycopg connections.

``Outbox.enqueue_sync(None, task)`` commits the job in a transaction of the
outbox's own. A new connection per job costs a TCP and authentication
handshake (and, through asyncpg, an event loop) each time: several times the
insert itself. psycopg 3, the sync driver the application already uses for
``enqueue_sync(conn, ...)``, keeps a few connections open instead, each used
by one thread at a time, in autocommit mode (the insert and its NOTIFY are
one statement, so one transaction, committed durably before it returns).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, LiteralString

import psycopg
from psycopg.pq import TransactionStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["SyncConnections"]

# Connections a forked child inherited: its parent's sessions. Never used nor
# closed here (closing would end the parent's session); kept referenced so that
# their __del__ (a ResourceWarning) never runs either.
_INHERITED: list[psycopg.Connection[Any]] = []


class SyncConnections:
    """Idle psycopg connections to one database, lent to one statement at a time.

    At most ``keep`` stay open between statements (more are opened when more
    threads enqueue at once, and closed after use). A connection the server
    closed while it was idle (a restart, an idle timeout) is replaced and the
    statement tried once more on a new one. :meth:`close` closes the idle
    ones, and so does garbage collection of this object: an outbox nobody
    closes (a sync app's module-level one) leaves no connection behind.

    Args:
        connect: opens a new connection (autocommit).
        keep: how many idle connections stay open.
    """

    errors = psycopg.Error
    """What :meth:`fetch` raises when the database refuses or cannot be reached."""

    __slots__ = ("__weakref__", "_connect", "_generation", "_idle", "_keep", "_lock", "_pid")

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], keep: int) -> None:
        self._connect = connect
        self._keep = keep
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        # Bumped by close(): a connection lent out before it is closed when it comes back.
        self._generation = 0
        weakref.finalize(self, _close_idle, self._idle, self._pid)

    def fetch(self, query: LiteralString, params: Mapping[str, object]) -> list[tuple[Any, ...]]:
        """Run ``query`` on an idle connection (or a new one); return its rows.

        Raises:
            psycopg.Error: the database refused the statement, or cannot be reached.
        """
        conn, generation = self._take()
        reused = conn is not None
        if conn is None:
            conn = self._connect()
        try:
            try:
                return conn.execute(query, params).fetchall()
            except psycopg.OperationalError:
                if not (reused and conn.broken):
                    raise
                # Lost while idle: most likely the statement never reached the server.
                # Had it committed, the job is stored twice (delivery is at-least-once;
                # an idempotency key makes the repeat a no-op).
                conn.close()
                conn = self._connect()
                return conn.execute(query, params).fetchall()
        finally:
            self._give_back(conn, generation)

    def _take(self) -> tuple[psycopg.Connection[Any] | None, int]:
        with self._lock:
            if os.getpid() != self._pid:  # forked: the idle connections are the parent's
                _INHERITED.extend(self._idle)
                self._idle.clear()
                self._pid = os.getpid()
                weakref.finalize(self, _close_idle, self._idle, self._pid)
            return (self._idle.pop() if self._idle else None), self._generation

    def _give_back(self, conn: psycopg.Connection[Any], generation: int) -> None:
        # Only a connection idle and outside any transaction is lent again: one
        # interrupted mid-statement, or broken, is closed.
        reusable = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if reusable and generation == self._generation and len(self._idle) < self._keep:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections; those lent out are closed when they come back.

        Later statements open new connections: closing the outbox and using it
        again works, as it does with no connection kept.
        """
        with self._lock:
            self._generation += 1
            idle, self._idle[:] = list(self._idle), []
        for conn in idle:
            conn.close()


def _close_idle(idle: list[psycopg.Connection[Any]], pid: int) -> None:
    """The finalizer: close what is idle, in the process that opened it."""
    if os.getpid() == pid:
        for conn in idle:
            conn.close()

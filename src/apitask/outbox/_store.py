"""The port between the outbox and a database: a small Store protocol.

An adapter (:mod:`apitask.outbox.sqlite`, :mod:`apitask.outbox.postgres`)
implements it with its driver; the worker and the facade only see this.
Every method is one short transaction of its own, except :meth:`Store.insert`
given a connection, which writes into the caller's transaction.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._records import OutboxError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from ._records import Finish, Job, JobState, SchemaStatus, Stats

__all__ = ["NewJob", "Store", "as_sqlalchemy", "call_on_commit", "translate_errors"]


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to insert: the task's type, its JSON payload, and options."""

    type: str
    payload: str
    idempotency_key: str | None = None
    delay: float = 0.0
    request_id: str | None = None


class Store(Protocol):
    """What the outbox needs from a database."""

    dialect: str
    """``"sqlite"`` or ``"postgresql"``."""

    async def open(self) -> None:
        """Connect (idempotent)."""

    async def aclose(self) -> None:
        """Release every connection."""

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""

    async def schema_status(self) -> SchemaStatus:
        """The migrations applied to the database and those this release ships.

        Reads only: on a database never migrated it creates nothing (not even
        the migrations table) and reports none applied.
        """

    async def insert(self, conn: object | None, job: NewJob) -> int | None:
        """Insert ``job`` in ``conn``'s transaction, or in a transaction of its own
        when ``conn`` is ``None``. Return the id, or ``None`` when the idempotency
        key was already taken."""

    def insert_sync(self, job: NewJob) -> int | None:
        """:meth:`insert` in a transaction of its own, from a thread with no loop."""

    def insert_statement(self, job: NewJob) -> tuple[str, dict[str, object]]:
        """The SQL (parameters written ``:name``) and parameters that insert ``job``,
        for a connection of the caller's (:meth:`Outbox.enqueue_sync`).

        The statement returns one row, the job's id, or none when the
        idempotency key was already taken; on PostgreSQL it also notifies
        listening workers, on commit.
        """

    async def claim(self, worker: str, limit: int, lease: float) -> list[Job]:
        """Lease up to ``limit`` due jobs to ``worker`` for ``lease`` seconds."""

    async def heartbeat(self, worker: str, ids: Sequence[int], lease: float) -> None:
        """Extend ``worker``'s leases on ``ids`` by ``lease`` seconds from now."""

    async def reap(self, worker: str) -> int:
        """Make jobs with expired leases due again, except ``worker``'s; return how many.

        Each gets a ``lease_expired`` event naming the worker that lost it.

        A live worker knows what it runs: its own expired leases (heartbeats
        held up by a busy database) stay its own, so that an outcome it has
        yet to write is not lost and the job not run a second time.
        """

    async def finish(self, worker: str, outcomes: Sequence[Finish], *, keep: bool) -> None:
        """Write back attempt outcomes: one statement per verdict (named queries
        ``succeed``, ``schedule_retry``, ``dead_letter``, ``release``). A retry
        or a dead letter adds a ``failed`` or ``dead`` event to the job's
        history in the same transaction; a success or a release adds none.

        A succeeded row is deleted, or, with ``keep``, kept with its payload
        erased (``{}``): it never runs again, and the payload is the task's
        data (a mail's address and one-time code).
        """

    async def purge(self, state: JobState, older_than: float) -> int:
        """Delete jobs in ``state`` finished more than ``older_than`` seconds ago,
        their events with them."""

    async def retry_dead(self, ids: Sequence[int] | None, by: str | None = None) -> int:
        """Queue dead jobs again (``ids``, or all when ``None``), attempts reset;
        return how many. What :meth:`Outbox.retry` and ``apitask outbox retry`` do.
        Each gets a ``retried`` event with ``by`` (who asked) as its detail."""

    async def list(self, state: JobState | None, limit: int) -> list[Job]:
        """The newest ``limit`` jobs, in ``state`` if given."""

    async def stats(self) -> Stats:
        """Counts by type and state."""

    async def listen(self, wake: Callable[[], None]) -> Callable[[], Awaitable[None]] | None:
        """Call ``wake`` when jobs are enqueued; return a closer, or ``None``
        when this store cannot listen (workers then poll)."""


def as_sqlalchemy(conn: object) -> Any:
    """``conn`` as a SQLAlchemy ``AsyncConnection``-like executor, or ``None``.

    An ``AsyncSession`` is used as is: executing on it joins the transaction
    it has (or begins one, as SQLAlchemy does for any statement).
    """
    module = type(conn).__module__
    if module.startswith("sqlalchemy."):
        return conn
    return None


async def execute_sqlalchemy(
    conn: Any, sql: str, params: object, on_commit: Callable[[], None] | None = None
) -> int | None:
    """Run an insert through a SQLAlchemy connection or session, as driver SQL.

    ``exec_driver_sql`` skips SQLAlchemy's statement compilation (a third of
    the cost of a ``text()`` statement here); ``sql`` and ``params`` are in
    the driver's own style. Returns the first column of the first row, if any.
    ``on_commit`` is called when the connection next commits (see
    :func:`call_on_commit`).
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        if not hasattr(conn, "exec_driver_sql"):
            # An AsyncSession: the connection of its transaction (begun if needed).
            conn = await conn.connection()
        result = await conn.exec_driver_sql(sql, params)
        row = result.first()
    except SQLAlchemyError as exc:
        raise OutboxError(f"could not enqueue the job: {exc}") from exc
    if on_commit is not None:
        call_on_commit(conn, on_commit)
    return None if row is None else int(row[0])


_commit_callbacks: weakref.WeakKeyDictionary[Any, set[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)
"""Per SQLAlchemy ``Connection``: the callbacks waiting for its next commit."""


def call_on_commit(conn: Any, callback: Callable[[], None]) -> None:
    """Call ``callback`` (once) when the SQLAlchemy ``AsyncConnection`` ``conn`` commits.

    SQLAlchemy's ``commit`` event comes as the commit starts, on the event
    loop's thread: a worker woken by it claims right after, and on SQLite its
    ``BEGIN IMMEDIATE`` waits for this commit's write lock, so it sees the row.
    A rollback leaves the listener on the connection object, which is
    discarded at the end of its ``begin()`` block (at worst: one spare wake-up).
    """
    from sqlalchemy import event

    sync = conn.sync_connection
    # One listener per connection and callback, however many jobs the transaction writes.
    pending = _commit_callbacks.setdefault(sync, set())
    if callback in pending:
        return

    def on_commit(_connection: object) -> None:
        pending.discard(callback)
        callback()

    pending.add(callback)
    event.listen(sync, "commit", on_commit, once=True)


@contextlib.contextmanager
def translate_errors(action: str, *driver_errors: type[BaseException]) -> Iterator[None]:
    """Re-raise the driver's errors as :class:`OutboxError` naming ``action``."""
    try:
        yield
    except driver_errors as exc:
        raise OutboxError(f"could not {action}: {exc}") from exc

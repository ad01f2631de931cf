"""The facade: enqueue in the caller's transaction, a TaskSink, workers, operations."""

from __future__ import annotations

import contextlib
import contextvars
from typing import TYPE_CHECKING, Any, Literal

from .._exceptions import TaskError
from .._request_id import current_request_id
from .._scope import RequestScope, activate, current_scope, deactivate, scope
from ._registry import TaskRegistry, encode_payload
from ._store import NewJob
from ._sync_enqueue import insert_sync_in
from ._worker import Worker

# Imported now, not in open_store: loading it reads the SQL files, which must
# not happen on a running event loop. (It needs only the stdlib; the
# PostgreSQL store needs asyncpg, so it stays a lazy import.)
from .sqlite import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence
    from types import TracebackType

    from .._types import Task
    from ._records import Job, JobState, SchemaStatus, Stats
    from ._store import Store

__all__ = ["Outbox", "OutboxSink", "open_outbox", "open_store"]

# The transaction the code running now declared with Outbox.transaction():
# (outbox, connection). The sink enqueues into it.
_declared: contextvars.ContextVar[tuple[Outbox, object] | None] = contextvars.ContextVar(
    "apitask_outbox_transaction", default=None
)
# The same for sync code, declared with Outbox.transaction_sync(): kept apart
# so that an async submit never meets a sync connection, nor the reverse.
_declared_sync: contextvars.ContextVar[tuple[Outbox, object] | None] = contextvars.ContextVar(
    "apitask_outbox_transaction_sync", default=None
)


def open_store(
    url: str,
    *,
    schema: str | None = None,
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL",
) -> Store:
    """The store for a database URL.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db`` (``sqlite+aiosqlite``
    too) or ``postgresql://...`` (``postgres://``, ``postgresql+asyncpg://``).

    Raises:
        ValueError: the URL names no database this outbox supports.
    """
    scheme, sep, rest = url.partition("://")
    driverless = scheme.split("+", 1)[0]
    if sep and driverless == "sqlite" and rest.startswith("/") and len(rest) > 1:
        if schema is not None:
            raise ValueError("schema: SQLite has no schemas; leave it unset")
        return SQLiteStore(rest[1:], synchronous=synchronous)
    if sep and driverless in ("postgres", "postgresql"):
        from .postgres import PostgresStore

        return PostgresStore(f"postgresql://{rest}", schema=schema)
    raise ValueError(
        f"url: expected sqlite:///path or postgresql://..., got {url.split('@')[-1]!r}"
    )


class Outbox:
    """A durable outbox: jobs written in your transaction, run by workers.

    Args:
        store: the database (see :func:`open_outbox` to make one from a URL).
        registry: rebuilds stored tasks; needed by workers, not to enqueue.

    Example::

        outbox = open_outbox("postgresql://app@db/app", registry)
        async with engine.begin() as conn:
            await conn.execute(insert_user)
            await outbox.enqueue(conn, mail_task)  # committed with the user, or not at all
    """

    def __init__(self, store: Store, registry: TaskRegistry | None = None) -> None:
        self.store = store
        self.registry = registry or TaskRegistry()
        self.sink = OutboxSink(self)
        """A :class:`~apitask.TaskSink`: bind it to request scopes or a pool's spill."""

    def __repr__(self) -> str:
        return f"<Outbox {self.store!r}>"

    async def __aenter__(self) -> Outbox:
        await self.store.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the outbox's own connections (never the caller's)."""
        await self.store.aclose()

    async def migrate(self) -> list[int]:
        """Create or upgrade the outbox tables; return the versions applied."""
        return await self.store.migrate()

    async def schema_status(self) -> SchemaStatus:
        """How far the outbox tables are migrated, read without changing anything.

        ``status.pending`` lists what :meth:`migrate` would apply; a service can
        refuse to start on a database that is behind
        (``status.current < status.latest``).
        """
        return await self.store.schema_status()

    async def enqueue(
        self,
        conn: object | None,
        task: Task,
        idempotency_key: str | None = None,
        *,
        delay: float = 0.0,
    ) -> int | None:
        """Write ``task`` as a job row in the transaction open on ``conn``.

        The job exists if and only if that transaction commits. Nothing is
        committed here: the caller's ``commit`` publishes the job, its
        ``rollback`` drops it. The id of the request this runs for
        (:func:`apitask.logs.current_request_id`) is stored with the job; the
        worker runs the task with it.

        Args:
            conn: a SQLAlchemy ``AsyncConnection`` or ``AsyncSession`` (or the
                driver's own connection: ``asyncpg.Connection``,
                ``aiosqlite.Connection``). ``None`` enqueues in a short
                transaction of the outbox's own.
            task: a :class:`~apitask.DurableTask`; its ``type`` and ``payload()``
                are stored.
            idempotency_key: a repeated key is a no-op (while the first job
                is kept: see retention).
            delay: seconds before the job is due.

        Returns:
            The job id, or ``None`` when ``idempotency_key`` was already used.

        Raises:
            ValueError: ``delay`` is negative.
            TypeError: ``task`` is not durable (has no ``payload()``), its
                payload is not JSON-serialisable (NaN included), or ``conn``
                is none of the connections above for this store's database.
            OutboxError: the database refused the insert or could not be
                reached (the driver's exception is its ``__cause__``).
        """
        return await self.store.insert(conn, _new_job(task, idempotency_key, delay))

    def enqueue_sync(
        self,
        conn: object | None,
        task: Task,
        idempotency_key: str | None = None,
        *,
        delay: float = 0.0,
        allow_autocommit: bool = False,
    ) -> int | None:
        """:meth:`enqueue` for sync code: write ``task`` in the transaction open on ``conn``.

        The same job row as :meth:`enqueue` (the same table, the same JSON),
        so async workers run jobs that sync code wrote. Nothing is committed
        here: the caller's commit publishes the job, with its other writes;
        a rollback drops it. On PostgreSQL the commit also wakes listening
        workers (a ``NOTIFY`` sent in the transaction).

        Args:
            conn: the connection whose transaction the job joins:

                * a SQLAlchemy ``Connection`` or ``Session`` (sync; a
                  ``scoped_session`` such as Flask-SQLAlchemy's ``db.session``
                  too), over ``sqlite3`` or psycopg 3;
                * a ``sqlite3.Connection`` or a psycopg 3 ``Connection``;
                * Django's ``connection`` (recognised by its ``cursor()``,
                  ``vendor``, ``in_atomic_block`` and ``get_autocommit()``:
                  apitask does not import Django), inside
                  ``transaction.atomic()``.

                ``None`` writes the job in a transaction of the outbox's own,
                committed before this returns.
            task: a :class:`~apitask.DurableTask`.
            idempotency_key: a repeated key is a no-op (see :meth:`enqueue`).
            delay: seconds before the job is due.
            allow_autocommit: on a connection in autocommit mode with no
                transaction open, commit the job at once on its own instead
                of raising (Django outside ``atomic()``, say).

        Returns:
            The job id, or ``None`` when ``idempotency_key`` was already used.

        Raises:
            ValueError: ``delay`` is negative.
            TypeError: ``task`` is not durable, its payload is not
                JSON-serialisable, or ``conn`` is none of the connections
                above, is async, or is to another kind of database than the
                outbox's.
            OutboxError: ``conn`` is in autocommit mode with no transaction
                open (and ``allow_autocommit`` is false), or the database
                refused the insert (the driver's exception is its
                ``__cause__``; Django's exceptions are raised as they are).
        """
        job = _new_job(task, idempotency_key, delay)
        return insert_sync_in(self.store, conn, job, allow_autocommit=allow_autocommit)

    @contextlib.asynccontextmanager
    async def transaction(self, conn: object) -> AsyncIterator[None]:
        """Declare ``conn``'s open transaction as where :func:`apitask.run` enqueues.

        Inside the block, tasks handed to :attr:`sink` (by ``apitask.run``
        in a scope bound to it) are written into ``conn``'s transaction. If
        no request scope is open, one bound to :attr:`sink` is opened for the
        block; an open scope is reused, and its own sink decides. The block
        neither begins nor commits the transaction.

        Example::

            async with session.begin(), outbox.transaction(session):
                session.add(user)
                await apitask.run(mailer.confirmation(user, token))
        """
        token = _declared.set((self, conn))
        try:
            async with scope(sink=self.sink):
                yield
        finally:
            _declared.reset(token)

    @contextlib.contextmanager
    def transaction_sync(self, conn: object) -> Iterator[None]:
        """:meth:`transaction` for sync code: ``apitask.run_sync`` enqueues in ``conn``'s.

        Inside the block, tasks handed to :attr:`sink` (by
        :func:`apitask.run_sync` in a scope bound to it, such as a WSGI
        request under ``TaskMiddleware(sink=outbox.sink)``) are written with
        :meth:`enqueue_sync` into the transaction open on ``conn``. If no
        request scope is open, one bound to :attr:`sink` is opened for the
        block. The block neither begins nor commits the transaction.

        Example::

            with outbox.transaction_sync(db.session):
                db.session.add(user)
                apitask.run_sync(mailer.confirmation(user, token))
            db.session.commit()
        """
        token = _declared_sync.set((self, conn))
        opened = None
        if current_scope() is None:
            opened = activate(RequestScope(sink=self.sink))
        try:
            yield
        finally:
            if opened is not None:
                deactivate(opened)
            _declared_sync.reset(token)

    def worker(self, **options: Any) -> Worker:
        """A :class:`Worker` on this outbox (options: see :class:`Worker`)."""
        return Worker(self.store, self.registry, **options)

    # -- operations (the CLI's) ---------------------------------------------------

    async def list(self, state: JobState | None = None, limit: int = 50) -> list[Job]:
        """The newest ``limit`` jobs, in ``state`` if given."""
        return await self.store.list(state, limit)

    async def stats(self) -> Stats:
        """Job counts by type and state."""
        return await self.store.stats()

    async def retry(self, ids: Sequence[int] | None = None, *, by: str | None = None) -> int:
        """Retry dead jobs: queue them again, attempts reset; return how many.

        Each retried job's history gets a ``retried`` event (see
        :class:`~apitask.outbox.JobEvent`) in the same transaction.

        Args:
            ids: the dead jobs to retry; ``None`` retries every dead job. Ids of
                jobs that are not dead are skipped.
            by: who asked, for the history (``"alice on the dashboard"``).
        """
        return await self.store.retry_dead(ids, by)

    async def purge(self, state: JobState, older_than: float = 0.0) -> int:
        """Delete jobs in ``state`` finished over ``older_than`` seconds ago."""
        return await self.store.purge(state, older_than)


class OutboxSink:
    """A :class:`~apitask.TaskSink` that writes tasks to the outbox.

    Inside :meth:`Outbox.transaction` a task joins that transaction;
    elsewhere (a pool spilling its leftovers at shutdown, a scope bound to
    the sink with no transaction declared) it is written in a short
    transaction of its own.
    """

    __slots__ = ("outbox",)

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def __repr__(self) -> str:
        return f"<OutboxSink {self.outbox.store!r}>"

    def _declared_conn(
        self, declared: contextvars.ContextVar[tuple[Outbox, object] | None]
    ) -> object | None:
        """The connection declared to this sink's outbox in ``declared``, if any."""
        pair = declared.get()
        return pair[1] if pair is not None and pair[0] is self.outbox else None

    def _job(self, task: Task) -> NewJob:
        try:
            return _new_job(task, None, 0.0)
        except TypeError as exc:
            raise TaskError(f"the outbox cannot take task {task.type!r}: {exc}") from exc

    async def submit(self, task: Task) -> None:
        """Enqueue ``task`` in the declared transaction, or in one of its own.

        Raises:
            TaskError: the task is not durable (has no JSON payload).
            OutboxError: the database refused the insert.
        """
        job = self._job(task)
        await self.outbox.store.insert(self._declared_conn(_declared), job)

    def submit_sync(self, task: Task) -> None:
        """Enqueue ``task`` from a thread with no loop: in the transaction declared
        with :meth:`Outbox.transaction_sync`, or in one of its own.

        Raises:
            TaskError: the task is not durable (has no JSON payload).
            TypeError, OutboxError: as :meth:`Outbox.enqueue_sync` raises them.
        """
        job = self._job(task)
        conn = self._declared_conn(_declared_sync)
        insert_sync_in(self.outbox.store, conn, job, allow_autocommit=False)


def _new_job(task: Task, idempotency_key: str | None, delay: float) -> NewJob:
    """The row for ``task``, with the id of the request it is enqueued for.

    Raises:
        ValueError: ``delay`` is negative.
        TypeError: ``task`` is not durable or its payload is not JSON.
    """
    if delay < 0:
        raise ValueError(f"delay must be >= 0 seconds, got {delay!r}")
    return NewJob(task.type, encode_payload(task), idempotency_key, delay, current_request_id())


def open_outbox(
    url: str,
    registry: TaskRegistry | None = None,
    *,
    schema: str | None = None,
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL",
) -> Outbox:
    """An :class:`Outbox` on the database at ``url`` (see :func:`open_store`).

    Connections open on first use; close them with ``aclose()`` or use the
    outbox as an ``async with`` block.
    """
    return Outbox(open_store(url, schema=schema, synchronous=synchronous), registry)

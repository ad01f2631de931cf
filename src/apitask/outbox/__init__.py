"""The durable outbox: tasks written in your transaction, run by workers.

``enqueue(conn, task)`` writes a job row in the transaction the caller holds
(SQLAlchemy 2 async, or the driver's connection): commit publishes it,
rollback drops it. Workers on SQLite (embedded) or PostgreSQL (many
processes, many machines) claim jobs in batches under leases, retry
transient failures with backoff, and dead-letter the rest. Delivery is
at-least-once. See docs/outbox.md.

Needs the ``sqlalchemy`` extra (SQLite) or the ``postgres`` extra.
"""

from __future__ import annotations

from ._cli import add_worker_arguments, load_registry, run_worker, run_worker_command
from ._outbox import Outbox, OutboxSink, open_outbox, open_store
from ._records import Job, JobState, JobTimeoutError, OutboxError, Stats
from ._registry import JobDecodeError, TaskFactory, TaskRegistry
from ._store import NewJob, Store
from ._worker import Worker, WorkerState

__all__ = [
    "Outbox",
    "OutboxSink",
    "open_outbox",
    "open_store",
    "TaskRegistry",
    "TaskFactory",
    "Worker",
    "WorkerState",
    "run_worker",
    # for a service's own command line (apitask-auth worker)
    "add_worker_arguments",
    "run_worker_command",
    "load_registry",
    "Job",
    "JobState",
    "Stats",
    "Store",
    "NewJob",
    "OutboxError",
    "JobDecodeError",
    "JobTimeoutError",
]

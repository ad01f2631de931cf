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

from .._exports import lazy_names as _lazy_names
from .._exports import show_public_paths as _show_public_paths
from ._browse import BrowsableStore, JobFilter, StateCounts, WorkerLeases
from ._outbox import Outbox, OutboxSink, open_outbox, open_store
from ._records import (
    EVENTS_KEPT,
    Job,
    JobEvent,
    JobState,
    JobTimeoutError,
    OutboxError,
    SchemaStatus,
    Stats,
)
from ._registry import JobDecodeError, TaskFactory, TaskRegistry
from ._store import NewJob, Store
from ._worker import Worker, WorkerState, run_worker

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
    "Job",
    "JobEvent",
    "EVENTS_KEPT",
    "JobState",
    "Stats",
    "SchemaStatus",
    "Store",
    "BrowsableStore",
    "JobFilter",
    "StateCounts",
    "WorkerLeases",
    "NewJob",
    "OutboxError",
    "JobDecodeError",
    "JobTimeoutError",
]


# Classes and functions name apitask.outbox as their module, not the private
# one defining them: reprs, tracebacks, pickles and the API docs show the
# path users import.
_show_public_paths(__name__, globals(), __all__)

# Moved to apitask.cli (the command line's parts are not the outbox's API);
# importable from here, with a DeprecationWarning, for one release.
_MOVED_TO_CLI = ("add_worker_arguments", "load_registry", "run_worker_command")
__getattr__ = _lazy_names(__name__, dict.fromkeys(_MOVED_TO_CLI, "apitask.cli"), moved=True)

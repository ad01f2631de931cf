"""apitask: slow I/O off the request path of a Python web API, without losing it.

The call site is one function, :func:`run`; where the task runs (inline, in
the request's scope, in a worker pool, in a durable outbox) is configuration.
"""

from __future__ import annotations

from ._backoff import Backoff
from ._counters import Outcome, TaskCounters
from ._delivery import DeliveryTask
from ._duration import parse_duration
from ._exceptions import ApitaskError, PoolClosedError, QueueFullError, TaskError, TransientError
from ._exports import show_public_paths as _show_public_paths
from ._function import FunctionTask, task
from ._pool import FullPolicy, WorkerPool
from ._pool_state import DrainReport, Leftover, LeftoverState, PoolState
from ._request_id import current_request_id
from ._scope import (
    RequestScope,
    ScopeState,
    WaitReport,
    current_scope,
    run,
    scope,
    scope_counters,
    wait,
)
from ._sync import run_sync
from ._types import DurableTask, JSONValue, Task, TaskSink

__version__ = "0.1.0.dev0"

__all__ = [
    # the call site
    "Task",
    "task",
    "run",
    "run_sync",
    "wait",
    "scope",
    # scopes, for integrations
    "RequestScope",
    "ScopeState",
    "WaitReport",
    "current_scope",
    "current_request_id",
    "FunctionTask",
    "scope_counters",
    # the worker pool
    "WorkerPool",
    "FullPolicy",
    "PoolState",
    "DrainReport",
    "Leftover",
    "LeftoverState",
    # shared by pool and outbox
    "Backoff",
    "Outcome",
    "TaskCounters",
    # configuration: the durations the CLI and the service read
    "parse_duration",
    # extension points
    "DurableTask",
    "DeliveryTask",
    "JSONValue",
    "TaskSink",
    # errors
    "ApitaskError",
    "PoolClosedError",
    "QueueFullError",
    "TaskError",
    "TransientError",
]

# Reprs, tracebacks, help() and the API docs show apitask.WorkerPool, not
# apitask._pool.WorkerPool: the path users import it from.
_show_public_paths(__name__, globals(), __all__)

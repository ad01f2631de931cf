"""Counters per task type and outcome, readable in code (and exported as metrics)."""

from __future__ import annotations

import enum
import threading

__all__ = ["Outcome", "TaskCounters"]


class Outcome(enum.StrEnum):
    """What happened to a task, as counted."""

    SUBMITTED = "submitted"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    RETRIED = "retried"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"
    SPILLED = "spilled"


class TaskCounters:
    """Thread-safe counts keyed by (task type, outcome).

    Task types are low-cardinality by contract, so the table stays small.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        # A plain dict and an explicit acquire/release: every request that
        # ran a task adds here once, and this form costs 0.26-0.29 µs an add
        # where a Counter under ``with`` cost 0.42-0.78 µs (timeit, issue 19).
        self._counts: dict[tuple[str, Outcome], int] = {}
        self._lock = threading.Lock()

    def add(self, type: str, outcome: Outcome, n: int = 1) -> None:
        """Count ``n`` tasks of ``type`` with ``outcome``."""
        key = (type, outcome)
        lock = self._lock
        lock.acquire()
        try:
            counts = self._counts
            counts[key] = counts.get(key, 0) + n
        finally:
            lock.release()

    def get(self, type: str, outcome: Outcome) -> int:
        """How many tasks of ``type`` had ``outcome`` so far."""
        return self._counts.get((type, outcome), 0)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """A copy as ``{type: {outcome: count}}``, for metrics and tests."""
        with self._lock:
            items = list(self._counts.items())
        table: dict[str, dict[str, int]] = {}
        for (type, outcome), count in items:
            table.setdefault(type, {})[outcome.value] = count
        return table

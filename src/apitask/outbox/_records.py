"""Values the outbox reads and writes: job rows, their states, worker outcomes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import ApitaskError, TransientError

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

__all__ = [
    "EVENTS_KEPT",
    "Finish",
    "Job",
    "JobEvent",
    "JobState",
    "JobTimeoutError",
    "OutboxError",
    "SchemaStatus",
    "Stats",
    "Verdict",
]


class OutboxError(ApitaskError):
    """The outbox's database could not be reached or answered with an error.

    The driver's exception is chained as ``__cause__``.
    """


class JobTimeoutError(TransientError):
    """An attempt ran longer than the worker's ``job_timeout`` and was cancelled.

    Transient (a slow attempt may pass), so it is retried by the same rule
    as every :class:`~apitask.TransientError`. It is the worker's verdict,
    not the task's: the task's own ``TimeoutError`` is not retried.
    """


class JobState(enum.StrEnum):
    """Where a job row is in its life.

    ::

        queued ──claim──> running ──ok──────────────> succeeded ──retention──> (purged)
                             │ └──TransientError──> retrying ──(run_at due)──> running ...
                             └────permanent error / attempts used up──> dead
    """

    QUEUED = "queued"
    """Committed and waiting for a worker."""
    RUNNING = "running"
    """Claimed by a worker that holds a lease on it."""
    SUCCEEDED = "succeeded"
    """Ran to completion (kept for the retention period, then purged)."""
    RETRYING = "retrying"
    """An attempt failed; a retry is scheduled at ``run_at``.

    Formerly ``FAILED = "failed"``, renamed because the job has not failed
    for good: that is ``DEAD``, which the counters call ``Outcome.FAILED``.
    Outbox migration 3 rewrites the stored rows."""
    DEAD = "dead"
    """Given up on: ``last_error`` says why. ``apitask outbox retry`` revives it."""


@dataclass(frozen=True, slots=True)
class Job:
    """A stored job record: one row of the outbox's jobs table, as a worker
    claimed it or a listing (:meth:`Outbox.list`) read it.

    A read-only snapshot of the row (changing it changes nothing stored). Not
    to be confused with a task waiting in a :class:`~apitask.WorkerPool`'s
    memory: that one has no row and no id.

    Attributes:
        id: row id, unique in its database.
        type: the task type, looked up in the :class:`TaskRegistry`.
        payload: the task's payload as stored (JSON text).
        state: where the job is in its life.
        attempts: attempts started so far (the current one included).
        run_at: when it is (or was) due.
        created_at: when it was enqueued.
        finished_at: when it succeeded or died, if it has.
        idempotency_key: the key given at enqueue, if any.
        last_error: why the last attempt failed, if one did.
        request_id: the id of the request that enqueued it, if one did: the
            worker runs the task with it, so the task's log lines name it.
    """

    id: int
    type: str
    payload: str
    state: JobState
    attempts: int
    run_at: datetime
    created_at: datetime
    finished_at: datetime | None = None
    idempotency_key: str | None = None
    last_error: str | None = None
    request_id: str | None = None

    @classmethod
    def from_row(cls, row: Any, when: Callable[[Any], datetime]) -> Job:
        """A job from a database row read by name; ``when`` reads a time column
        (the drivers store times differently)."""
        finished_at = row["finished_at"]
        return cls(
            id=row["id"],
            type=row["type"],
            payload=row["payload"],
            state=JobState(row["state"]),
            attempts=row["attempts"],
            run_at=when(row["run_at"]),
            created_at=when(row["created_at"]),
            finished_at=None if finished_at is None else when(finished_at),
            idempotency_key=row["idempotency_key"],
            last_error=row["last_error"],
            request_id=row["request_id"],
        )


EVENTS_KEPT = 50
"""Events kept per job: the newest. A job retried for ever keeps a bounded history."""


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One entry of a job's history (:meth:`BrowsableStore.events`), written in the
    same transaction as the change of the job's row it records.

    Kinds:

    * ``failed``: an attempt failed and a retry is scheduled (``run_at``);
      ``detail`` is the error, as stored in ``last_error``.
    * ``dead``: the job was given up on; ``detail`` says why.
    * ``lease_expired``: ``worker`` stopped heartbeating during ``attempt``;
      another worker made the job due again (``run_at``).
    * ``retried``: an operator queued the dead job again; ``detail`` says who.
    * ``cancelled``: an operator called the pending job off; ``detail`` says who.

    A success writes no event (the job's ``finished_at`` dates it), nor does a
    claim: the hot path writes what it wrote before.

    Attributes:
        id: the event's id (events of a job are ordered by it).
        job_id: the job.
        at: when it happened (the database's clock on PostgreSQL).
        kind: one of the kinds above (a later release may add kinds).
        attempt: the job's attempt it concerns, if any.
        worker: the worker that ran that attempt, if any.
        run_at: when the job is due again, if the event left it pending.
        detail: the error, reason or operator, as text.
    """

    id: int
    job_id: int
    at: datetime
    kind: str
    attempt: int | None = None
    worker: str | None = None
    run_at: datetime | None = None
    detail: str | None = None

    @classmethod
    def from_row(cls, row: Any, when: Callable[[Any], datetime]) -> JobEvent:
        """An event from a database row read by name; ``when`` reads a time column."""
        run_at = row["run_at"]
        return cls(
            id=row["id"],
            job_id=row["job_id"],
            at=when(row["at"]),
            kind=row["kind"],
            attempt=row["attempt"],
            worker=row["worker"],
            run_at=None if run_at is None else when(run_at),
            detail=row["detail"],
        )


class Verdict(enum.Enum):
    """What a worker decided about one attempt."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"
    DEAD = "dead"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class Finish:
    """The outcome of one attempt, for the store to write back in a batch.

    Attributes:
        job_id: the job.
        verdict: what to do with the row.
        delay: for ``RETRY``, seconds until the next attempt.
        error: for ``RETRY`` and ``DEAD``, the reason recorded as ``last_error``.
    """

    job_id: int
    verdict: Verdict
    delay: float = 0.0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Stats:
    """Job counts by task type and state (``apitask outbox stats``)."""

    counts: dict[str, dict[JobState, int]]

    def total(self, state: JobState) -> int:
        """Jobs in ``state`` over every type."""
        return sum(by_state.get(state, 0) for by_state in self.counts.values())


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """How far a database's outbox tables are migrated (:meth:`Outbox.schema_status`).

    Attributes:
        applied: the migration versions recorded in the database, ascending
            (empty when it was never migrated).
        known: the migration versions this release ships, ascending.
    """

    applied: tuple[int, ...]
    known: tuple[int, ...]

    @property
    def current(self) -> int:
        """The highest applied version, 0 when none is."""
        return max(self.applied, default=0)

    @property
    def latest(self) -> int:
        """The highest version this release ships."""
        return max(self.known, default=0)

    @property
    def pending(self) -> tuple[int, ...]:
        """The versions :meth:`Outbox.migrate` would apply (none: up to date)."""
        return tuple(v for v in self.known if v not in self.applied)

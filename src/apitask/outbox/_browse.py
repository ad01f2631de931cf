"""Reading the jobs table page by page, for an operator: filters and keyset pages.

The SQL is put together from fixed fragments (one per filter given), never
from input: values are bound parameters. A query names only the filters it
uses, so the planner sees plain ``=`` terms, not ``:x IS NULL OR ...``.
Pages are keyset pages (``id < :before ORDER BY id DESC``): each page costs
the same however deep it is, where ``OFFSET`` would scan every row before it.
Every filter has an index that yields its jobs in that order (outbox
migrations 4 and 5), so a page reads about a page of rows: a state's
(``apitask_jobs_active``, ``_failures``), a type's, a request's. Succeeded
jobs alone are listed newest finished first, through the retention index
``apitask_jobs_finished`` (an index of every succeeded job by id would cost
each finish one more write); their cursor is still a job id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, LiteralString, Protocol

from ._records import JobState

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from ._records import Job, JobEvent

__all__ = [
    "JOB_COLUMNS",
    "BrowsableStore",
    "JobFilter",
    "StateCounts",
    "WorkerLeases",
    "search_sql",
    "state_counts",
    "typed_states",
]

JOB_COLUMNS: LiteralString = (
    "id, type, payload, state, attempts, run_at, created_at, finished_at,"
    " idempotency_key, last_error, request_id"
)

# A DNS name, lower case: no LIKE wildcard ("%", "_") can get in.
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")

# Mail jobs to a recipient at a domain. On PostgreSQL the domain is cut out and
# compared whole: the planner has no statistics on the expression and guesses
# an equality matches 0.5% of rows, so it walks the failures index newest
# first and stops after a page; a LIKE '%@domain' there is guessed to match
# almost nothing, and the planner read and sorted every dead job instead
# (0.14 s at 50k). The CASE leaves other jobs' payloads unparsed.
_DOMAIN_TERM: dict[str, LiteralString] = {
    "sqlite": (
        "type LIKE 'mailer.%' AND lower(json_extract(payload, '$.message.to')) LIKE :domain"
    ),
    "postgresql": (
        "(CASE WHEN type LIKE 'mailer.%'"
        " THEN substring(lower(payload::jsonb #>> '{message,to}') FROM '@([^@]*)$') END)"
        " = :domain"
    ),
}


# The cursor job's finish time (a lookup by primary key).
_FINISHED_AT: LiteralString = "(SELECT finished_at FROM apitask_jobs WHERE id = :before)"


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a listing shows; every field given must match.

    Attributes:
        state: jobs in this state.
        type: jobs of this task type (exact).
        request_id: jobs enqueued by this request.
        domain: mail jobs (type ``mailer.*``) to a recipient at this domain.
            Succeeded mail jobs have their payload erased, so they never match.
    """

    state: JobState | None = None
    type: str | None = None
    request_id: str | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.domain is not None and not _DOMAIN.match(self.domain):
            raise ValueError(f"domain: expected a lower-case DNS name, got {self.domain!r}")


@dataclass(frozen=True, slots=True)
class WorkerLeases:
    """What the jobs table knows of one worker: the jobs it holds now.

    Attributes:
        worker: the worker's name (``locked_by``).
        jobs: running jobs it holds a lease on.
        lease_until: when its latest lease runs out: its last heartbeat
            (or claim) plus its lease length.
        oldest_lease_until: when its earliest lease runs out (in the past:
            the worker stopped heartbeating and another will reap the job).
    """

    worker: str
    jobs: int
    lease_until: datetime
    oldest_lease_until: datetime


@dataclass(frozen=True, slots=True)
class StateCounts:
    """Jobs by state, each counted up to a cap, and by type (an operator's page).

    Counting every row of a million-row table takes a scan of it (0.5 s on
    SQLite); counting up to ``cap`` reads at most ``cap`` entries of each
    state's index. The states an operator watches (queued, running, retrying,
    dead) are exact while they are below the cap; a state above it is shown
    as "10,000+", or, where the database keeps statistics (PostgreSQL), as
    its estimate "≈ 912,000".

    Attributes:
        cap: counting stops past this many jobs of one state.
        counts: jobs in each state, up to ``cap + 1`` (more than ``cap``: capped).
        by_type: ``{type: {state: jobs}}`` for the states in ``typed`` only
            (read right after ``counts``: jobs that moved in between may make
            a type's sum differ from ``counts`` by as many).
        typed: the states counted by type: those with at most the
            ``type_cap`` :meth:`BrowsableStore.count_states` was given (each
            job counted by type is a row read, where a count reads an index).
        estimates: for capped states, the database's estimate of their jobs
            (the planner's statistics as of the last ``ANALYZE``), if it has one.
    """

    cap: int
    counts: dict[JobState, int]
    by_type: dict[str, dict[JobState, int]] = field(default_factory=dict)
    estimates: dict[JobState, int] = field(default_factory=dict)
    typed: frozenset[JobState] = frozenset()

    @property
    def capped(self) -> frozenset[JobState]:
        """The states with more than ``cap`` jobs."""
        return frozenset(state for state, jobs in self.counts.items() if jobs > self.cap)

    def total(self, state: JobState) -> int:
        """Jobs in ``state``: exact below the cap; above it the estimate, else ``cap``."""
        jobs = self.counts.get(state, 0)
        if jobs <= self.cap:
            return jobs
        return self.estimates.get(state, self.cap)

    def shown(self, state: JobState) -> str:
        """``state``'s count as a page shows it: "1,234", "≈ 912,000" or "10,000+"."""
        if state not in self.capped:
            return f"{self.total(state):,}"
        if state in self.estimates:
            return f"≈ {self.estimates[state]:,}"
        return f"{self.cap:,}+"


def typed_states(counts: Mapping[str, int], type_cap: int) -> dict[str, bool]:
    """Which states to count by type (``{state: yes}``): those with jobs, at most ``type_cap``."""
    return {state: 0 < jobs <= type_cap for state, jobs in counts.items()}


def state_counts(
    cap: int,
    counts: Mapping[str, int],
    by_type: Iterable[tuple[str, str, int]] = (),
    estimates: Mapping[str, int] | None = None,
    type_cap: int = 0,
) -> StateCounts:
    """:class:`StateCounts` from each state's count up to ``cap + 1``, ``(state,
    type, jobs)`` rows of the states :func:`typed_states` chose with
    ``type_cap``, and the database's estimates (``{state: jobs}``).

    An estimate is kept for a capped state only, and only above the cap (a
    stale one below it says less than the count does).
    """
    table: dict[str, dict[JobState, int]] = {}
    for state, type, jobs in by_type:
        table.setdefault(type, {})[JobState(state)] = jobs
    typed = frozenset(JobState(s) for s, yes in typed_states(counts, type_cap).items() if yes)
    kept = {
        JobState(state): estimate
        for state, estimate in (estimates or {}).items()
        if estimate > cap and counts.get(state, 0) > cap
    }
    return StateCounts(
        cap, {JobState(state): jobs for state, jobs in counts.items()}, table, kept, typed
    )


class BrowsableStore(Protocol):
    """What an operator's page reads from a store beyond :class:`Store`'s
    operations (both stores of this package have it)."""

    async def count_states(self, cap: int, type_cap: int) -> StateCounts:
        """Jobs in each state, counted up to ``cap`` through an index, and by type
        for the states with at most ``type_cap`` jobs."""

    async def search(self, where: JobFilter, before: int | None, limit: int) -> list[Job]:
        """One page of jobs matching ``where``, newest first, ids below ``before``."""

    async def job(self, job_id: int) -> Job | None:
        """The job with id ``job_id``, if there is one."""

    async def events(self, job_id: int, limit: int) -> list[JobEvent]:
        """The newest ``limit`` events of job ``job_id``'s history, newest first."""

    async def cancel(self, ids: Sequence[int], reason: str) -> int:
        """Move pending (queued or retrying) jobs to dead with ``reason``; return how many.

        Each gets a ``cancelled`` event with ``reason`` as its detail."""

    async def oldest_due(self) -> datetime | None:
        """When the longest-waiting due job became due, or ``None`` when none waits."""

    async def workers(self) -> list[WorkerLeases]:
        """The workers holding leases now, with their lease times."""


def search_sql(
    dialect: str, where: JobFilter, before: int | None, limit: int
) -> tuple[LiteralString, dict[str, object]]:
    """The query for one page of jobs matching ``where``, newest first, ids below ``before``."""
    terms: list[LiteralString] = []
    params: dict[str, object] = {"limit": limit}
    if where.state is not None:
        terms.append("state = :state")
        params["state"] = where.state.value
    if where.type is not None:
        terms.append("type = :type")
        params["type"] = where.type
    if where.request_id is not None:
        terms.append("request_id = :request_id")
        params["request_id"] = where.request_id
    if where.domain is not None:
        terms.append(_DOMAIN_TERM[dialect])
        params["domain"] = "%@" + where.domain if dialect == "sqlite" else where.domain
    order: LiteralString = "id DESC"
    by_finish = where.state is JobState.SUCCEEDED and where == JobFilter(JobState.SUCCEEDED)
    if by_finish:
        # The IN term repeats the finished index's WHERE: SQLite uses a partial
        # index only when the query names its terms (PostgreSQL proves it anyway).
        terms.append("state IN ('succeeded', 'dead')")
        order = "finished_at DESC, id DESC"
    if before is not None:
        params["before"] = before
        if by_finish:
            # Below the cursor job in (finished_at, id) order. The first term
            # bounds the index walk; the row comparison breaks ties (a batch of
            # jobs finishes at one time).
            terms.append("finished_at <= " + _FINISHED_AT)
            terms.append("(finished_at, id) < (" + _FINISHED_AT + ", :before)")
        else:
            terms.append("id < :before")
    condition: LiteralString = " AND ".join(terms) if terms else "TRUE"
    sql = (
        "SELECT "
        + JOB_COLUMNS
        + " FROM apitask_jobs WHERE "
        + condition
        + " ORDER BY "
        + order
        + " LIMIT :limit"
    )
    return sql, params

"""Reading the jobs table page by page, for an operator: filters and keyset pages.

The SQL is put together from fixed fragments (one per filter given), never
from input: values are bound parameters. A query names only the filters it
uses, so the planner sees plain ``=`` terms, not ``:x IS NULL OR ...``.
Pages are keyset pages on the primary key (``id < :before ORDER BY id DESC``):
each page costs the same however deep it is, where ``OFFSET`` would scan
every row before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, LiteralString, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from ._records import Job, JobEvent, JobState

__all__ = ["JOB_COLUMNS", "BrowsableStore", "JobFilter", "WorkerLeases", "search_sql"]

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


class BrowsableStore(Protocol):
    """What an operator's page reads from a store beyond :class:`Store`'s
    operations (both stores of this package have it)."""

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
    if before is not None:
        terms.append("id < :before")
        params["before"] = before
    condition: LiteralString = " AND ".join(terms) if terms else "TRUE"
    sql = (
        "SELECT "
        + JOB_COLUMNS
        + " FROM apitask_jobs WHERE "
        + condition
        + " ORDER BY id DESC LIMIT :limit"
    )
    return sql, params

"""An in-memory Store for the worker's unit tests, with switches to make it fail."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apitask.outbox import Job, JobState, NewJob, OutboxError, SchemaStatus, Stats
from apitask.outbox._records import Verdict

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from apitask.outbox._records import Finish

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeStore:
    """Jobs in a dict; ``fail`` names the methods that raise OutboxError."""

    dialect: str = "fake"
    jobs: dict[int, Job] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    calls: dict[str, asyncio.Event] = field(default_factory=dict)
    can_listen: bool = True
    reaped: int = 0
    finished: list[Finish] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def called(self, name: str) -> asyncio.Event:
        """An event set the next time method ``name`` is called."""
        return self.calls.setdefault(name, asyncio.Event())

    def _enter(self, name: str) -> None:
        self.called(name).set()
        if name in self.fail:
            raise OutboxError(f"{name} failed (test)")

    def add(self, type: str, payload: str = "{}", *, attempts: int = 0) -> int:
        job_id = next(self._ids)
        self.jobs[job_id] = Job(job_id, type, payload, JobState.QUEUED, attempts, NOW, NOW)
        return job_id

    async def open(self) -> None:
        self._enter("open")

    async def aclose(self) -> None:
        self._enter("aclose")

    async def migrate(self) -> list[int]:
        return []

    async def insert(self, conn: object | None, job: NewJob) -> int | None:
        self._enter("insert")
        return self.add(job.type, job.payload)

    def insert_sync(self, job: NewJob) -> int | None:
        return self.add(job.type, job.payload)

    def insert_statement(self, job: NewJob) -> tuple[str, dict[str, object]]:
        raise NotImplementedError("the fake store has no SQL")

    async def claim(self, worker: str, limit: int, lease: float) -> list[Job]:
        self._enter("claim")
        due = [j for j in self.jobs.values() if j.state in (JobState.QUEUED, JobState.RETRYING)]
        claimed = []
        for job in due[:limit]:
            job = replace(job, state=JobState.RUNNING, attempts=job.attempts + 1)
            self.jobs[job.id] = job
            claimed.append(job)
        return claimed

    async def heartbeat(self, worker: str, ids: Sequence[int], lease: float) -> None:
        self._enter("heartbeat")

    async def reap(self, worker: str) -> int:
        self._enter("reap")
        reaped, self.reaped = self.reaped, 0
        return reaped

    async def finish(self, worker: str, outcomes: Sequence[Finish], *, keep: bool) -> None:
        self._enter("finish")
        states = {
            Verdict.SUCCEEDED: JobState.SUCCEEDED,
            Verdict.RETRY: JobState.RETRYING,
            Verdict.DEAD: JobState.DEAD,
            Verdict.RELEASED: JobState.QUEUED,
        }
        for o in outcomes:
            job = self.jobs[o.job_id]
            self.jobs[o.job_id] = replace(
                job,
                # As the real stores: a succeeded job keeps no payload.
                payload="{}" if o.verdict is Verdict.SUCCEEDED else job.payload,
                state=states[o.verdict],
                last_error=o.error,
                run_at=NOW + timedelta(seconds=o.delay),
                attempts=job.attempts - (o.verdict is Verdict.RELEASED),
            )
            self.finished.append(o)
        self.called("finished").set()

    async def schema_status(self) -> SchemaStatus:
        return SchemaStatus((), ())

    async def purge(self, state: JobState, older_than: float) -> int:
        self._enter(f"purge_{state.value}")
        return 0

    async def retry_dead(self, ids: Sequence[int] | None, by: str | None = None) -> int:
        return 0

    async def list(self, state: JobState | None, limit: int) -> list[Job]:
        return list(self.jobs.values())[:limit]

    async def stats(self) -> Stats:
        return Stats({})

    async def listen(self, wake: Callable[[], None]) -> Callable[[], Awaitable[None]] | None:
        self._enter("listen")
        if not self.can_listen:
            return None

        async def close() -> None:
            self.called("unlisten").set()

        return close

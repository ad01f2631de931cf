"""The worker's policy, against an in-memory store: retries, dead letters, drain, faults."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from outbox_fakes import FakeStore

from apitask import Backoff, TransientError
from apitask.outbox import JobState, TaskRegistry, Worker, WorkerState
from apitask.outbox._records import Job, Verdict

if TYPE_CHECKING:
    from collections.abc import Mapping

    from apitask import JSONValue


class Scripted:
    """A task whose behaviour is picked by its payload's ``do``."""

    def __init__(self, type: str, payload: Mapping[str, JSONValue], log: Log) -> None:
        self.type = type
        self.do = str(payload.get("do", "ok"))
        self.log = log

    async def run(self) -> None:
        self.log.started.set()
        self.log.runs.append(self.do)
        if self.do == "boom":
            raise ValueError("permanent trouble")
        if self.do == "flaky":
            raise TransientError("try later", retry_after=0.0)
        if self.do == "transient":
            raise TransientError("try later")
        if self.do == "timeout":
            raise TimeoutError
        if self.do == "hang":
            await asyncio.Event().wait()
        if self.do == "gate":
            await self.log.gate.wait()


class Log:
    def __init__(self) -> None:
        self.runs: list[str] = []
        self.started = asyncio.Event()
        self.gate = asyncio.Event()


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def registry(log: Log) -> TaskRegistry:
    registry = TaskRegistry()
    registry.register_prefix("t.", lambda type, payload: Scripted(type, payload, log))
    return registry


def make(store: FakeStore, registry: TaskRegistry, **options: object) -> Worker:
    options = {"poll_interval": 0.01, "backoff": Backoff(base=0.01, max_attempts=3)} | options
    return Worker(store, registry, **options)  # type: ignore[arg-type]


async def test_outcomes_follow_the_failure_policy(registry: TaskRegistry, log: Log) -> None:
    """ok succeeds; permanent errors and undecodable jobs are dead at once; transient
    errors retry until max_attempts, then die with the last error."""
    store = FakeStore()
    ids = {do: store.add("t.x", f'{{"do": "{do}"}}') for do in ("ok", "boom", "flaky")}
    unknown = store.add("other.type")
    broken = store.add("t.x", "{not json")
    worker = make(store, registry)
    await worker.run(until_empty=True)
    states = {job_id: job.state for job_id, job in store.jobs.items()}
    assert states[ids["ok"]] is JobState.SUCCEEDED
    assert states[ids["boom"]] is JobState.DEAD
    assert store.jobs[ids["boom"]].last_error == "ValueError: permanent trouble"
    assert states[ids["flaky"]] is JobState.DEAD
    assert store.jobs[ids["flaky"]].last_error == (
        "gave up after 3 attempts; last: TransientError: try later"
    )
    assert "no task factory registered for type 'other.type'" in str(store.jobs[unknown].last_error)
    assert "undecodable payload" in str(store.jobs[broken].last_error)
    assert log.runs.count("flaky") == 3
    assert worker.counters.get("t.x", "retried") == 2  # type: ignore[arg-type]
    assert worker.state is WorkerState.STOPPED


async def test_retry_delay_follows_backoff_or_retry_after(registry: TaskRegistry) -> None:
    """Without retry_after the delay comes from the Backoff; with it, retry_after wins."""
    store = FakeStore()
    store.add("t.x", '{"do": "transient"}')
    store.add("t.x", '{"do": "flaky"}')
    worker = make(store, registry, backoff=Backoff(base=100.0, cap=100.0, max_attempts=2))
    await worker.run(until_empty=True)
    retries = [o for o in store.finished if o.verdict is Verdict.RETRY]
    assert sorted(o.delay for o in retries)[0] == 0.0
    assert 50.0 <= sorted(o.delay for o in retries)[1] <= 100.0


async def test_a_job_whose_lease_expired_too_often_is_dead(registry: TaskRegistry) -> None:
    """A job already attempted max_attempts times (its workers died) is not run again."""
    store = FakeStore()
    job_id = store.add("t.x", attempts=3)
    await make(store, registry).run(until_empty=True)
    assert store.jobs[job_id].state is JobState.DEAD
    assert str(store.jobs[job_id].last_error).startswith("gave up after 3 attempts")


async def test_job_timeout_cancels_a_slow_attempt(registry: TaskRegistry) -> None:
    """An attempt longer than job_timeout is cancelled, as a JobTimeoutError: a
    TransientError, so retried (here max_attempts=1: given up, naming the timeout)."""
    store = FakeStore()
    job_id = store.add("t.x", '{"do": "hang"}')
    worker = make(store, registry, job_timeout=0.01, backoff=Backoff(max_attempts=1))
    await worker.run(until_empty=True)
    assert store.jobs[job_id].last_error == (
        "gave up after 1 attempts; last: JobTimeoutError: attempt ran longer than "
        "job_timeout (0.01s)"
    )


async def test_a_bare_timeout_error_is_final_as_in_the_pool(
    registry: TaskRegistry, log: Log
) -> None:
    """The outbox and the pool share one rule (apitask._backoff.next_delay): the task's
    own TimeoutError is not a TransientError, so the job is dead after one attempt,
    while the worker's job timeout (a TransientError) is retried."""
    store = FakeStore()
    bare = store.add("t.x", '{"do": "timeout"}')
    slow = store.add("t.x", '{"do": "hang"}')
    worker = make(store, registry, job_timeout=0.01, backoff=Backoff(base=0.001, max_attempts=2))
    await worker.run(until_empty=True)
    assert store.jobs[bare].state is JobState.DEAD
    assert store.jobs[bare].last_error == "TimeoutError"
    assert log.runs.count("timeout") == 1
    assert store.jobs[slow].state is JobState.DEAD
    assert str(store.jobs[slow].last_error).startswith("gave up after 2 attempts; last: JobTimeout")
    assert log.runs.count("hang") == 2


async def test_stop_drains_then_cancels_and_releases(registry: TaskRegistry, log: Log) -> None:
    """On stop a job still running at shutdown_timeout is cancelled and released."""
    store = FakeStore(can_listen=False)
    job_id = store.add("t.x", '{"do": "hang"}')
    worker = make(store, registry, shutdown_timeout=0.0)
    async with worker:
        await log.started.wait()
        assert "running=1" in repr(worker)
    assert store.jobs[job_id].state is JobState.QUEUED
    assert store.jobs[job_id].attempts == 0
    assert worker.counters.get("t.x", "cancelled") == 1  # type: ignore[arg-type]


async def test_stop_lets_running_jobs_finish_within_the_timeout(
    registry: TaskRegistry, log: Log
) -> None:
    """A job that ends before shutdown_timeout is recorded as succeeded, not released."""
    store = FakeStore()
    job_id = store.add("t.x", '{"do": "gate"}')
    worker = make(store, registry, shutdown_timeout=30.0)
    async with worker:
        await log.started.wait()
        worker.stop()
        while worker.state is not WorkerState.DRAINING:  # noqa: ASYNC110 - yields, never sleeps
            await asyncio.sleep(0)  # let the worker reach its drain (no timing involved)
        log.gate.set()
    assert store.jobs[job_id].state is JobState.SUCCEEDED


async def _claimed(store: FakeStore, log: Log, claimed: int, started: int) -> None:
    """Wait (yielding, no timing) until ``claimed`` jobs are leased and ``started`` ran."""
    async with asyncio.timeout(5):
        while (  # noqa: ASYNC110 - yields to the worker, never sleeps
            sum(j.state is JobState.RUNNING for j in store.jobs.values()) < claimed
            or len(log.runs) < started
        ):
            await asyncio.sleep(0)


async def test_a_busy_worker_claims_ahead_and_a_stop_releases_what_it_held(
    registry: TaskRegistry, log: Log
) -> None:
    """With every slot busy the worker claims a batch ahead (one query for many jobs,
    not one per freed slot); a freed slot starts a held job; a stop gives the held
    jobs back, due at once with the attempt uncounted."""
    store = FakeStore()
    ids = [store.add("t.x", '{"do": "gate"}') for _ in range(10)]
    sizes: list[int] = []
    claim = store.claim

    async def counted(worker: str, limit: int, lease: float) -> list[Job]:
        sizes.append(limit)
        return await claim(worker, limit, lease)

    store.claim = counted  # type: ignore[method-assign]
    worker = make(
        store, registry, concurrency=2, batch_size=2, batch_window=0.0, shutdown_timeout=5.0
    )
    async with worker:
        await _claimed(store, log, claimed=4, started=2)  # two running, two held ahead
        assert (len(log.runs), sizes) == (2, [2, 2])
        worker.stop()
        while worker.state is not WorkerState.DRAINING:  # noqa: ASYNC110 - yields, never sleeps
            await asyncio.sleep(0)
        log.gate.set()
    assert len(log.runs) == 2  # a stop starts nothing more
    states = [(store.jobs[i].state, store.jobs[i].attempts) for i in ids[:4]]
    assert states == [(JobState.SUCCEEDED, 1)] * 2 + [(JobState.QUEUED, 0)] * 2
    assert worker.counters.get("t.x", "cancelled") == 0  # type: ignore[arg-type]


async def test_a_prefetch_below_half_a_batch_still_claims_ahead(
    registry: TaskRegistry, log: Log
) -> None:
    """A prefetch smaller than half a batch is claimed ahead too (the threshold was
    half a batch, which such a prefetch never reaches: it claimed nothing ahead)."""
    store = FakeStore()
    store.add("t.x", '{"do": "ok"}')
    for _ in range(9):
        store.add("t.x", '{"do": "gate"}')
    worker = make(
        store,
        registry,
        concurrency=2,
        batch_size=8,
        prefetch=1,
        batch_window=0.0,
        shutdown_timeout=5.0,
    )
    async with worker:
        # The first claim takes ok + gate + one held; ok's slot starts the held
        # gate, and with both slots busy the worker claims one more ahead.
        await _claimed(store, log, claimed=3, started=3)
        assert log.runs == ["ok", "gate", "gate"]
        log.gate.set()


async def test_full_concurrency_waits_for_a_free_slot(registry: TaskRegistry) -> None:
    """With every slot busy the worker claims nothing until one frees."""
    store = FakeStore()
    for _ in range(5):
        store.add("t.x")
    worker = make(store, registry, concurrency=1, batch_size=1, batch_window=0.0)
    await worker.run(until_empty=True)
    assert all(job.state is JobState.SUCCEEDED for job in store.jobs.values())


async def test_store_faults_are_logged_and_survived(
    registry: TaskRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Failing claims, listens, heartbeats, maintenance and write-backs are logged;
    the worker keeps going and writes the outcomes once the store recovers."""
    store = FakeStore(fail={"claim", "listen", "heartbeat", "reap", "finish"})
    job_id = store.add("t.x")
    worker = make(store, registry, lease=0.03)
    async with worker:
        await store.called("claim").wait()
        store.fail.discard("claim")
        await store.called("heartbeat").wait()
        await store.called("reap").wait()
        store.calls.pop("finish", None)
        await store.called("finish").wait()
        store.fail.discard("finish")
        await store.called("finished").wait()
    assert store.jobs[job_id].state is JobState.SUCCEEDED
    text = caplog.text
    for message in ("claim failed", "cannot listen", "heartbeat failed", "maintenance failed"):
        assert message in text
    assert "could not record outcomes" in text


async def test_a_job_claimed_again_while_its_outcome_waits_is_not_run_again(
    registry: TaskRegistry, log: Log
) -> None:
    """Its outcome unwritable (a busy database), a job's lease expires and the worker
    claims the job again: it does not run it a second time, and writes the outcome
    once it can."""
    store = FakeStore(fail={"finish"})
    job_id = store.add("t.x")
    worker = make(store, registry)
    async with worker:
        await log.started.wait()
        await store.called("finish").wait()  # the write-back failed
        store.jobs[job_id] = replace(store.jobs[job_id], state=JobState.QUEUED)  # expired
        store.calls.pop("claim", None)
        await store.called("claim").wait()
        store.calls.pop("claim", None)
        await store.called("claim").wait()  # a claim after the one that took it again
        store.fail.discard("finish")
        await store.called("finished").wait()
    assert log.runs == ["ok"]
    assert store.jobs[job_id].state is JobState.SUCCEEDED
    assert store.jobs[job_id].attempts == 2  # claimed twice, run once


async def test_outcomes_unwritable_at_shutdown_are_left_to_lease_expiry(
    registry: TaskRegistry, caplog: pytest.LogCaptureFixture, log: Log
) -> None:
    """If the write-back fails while stopping, the worker says the jobs will run again."""
    store = FakeStore(fail={"finish"})
    store.add("t.x")
    worker = make(store, registry)
    async with worker:
        await log.started.wait()
    assert "their leases will expire" in caplog.text


async def test_maintenance_reaps_purges_and_wakes(registry: TaskRegistry) -> None:
    """Reaped leases wake the claim loop; retention purges succeeded and dead jobs."""
    store = FakeStore(can_listen=False, reaped=1)
    worker = make(
        store, registry, lease=0.02, retention=10.0, dead_retention=20.0, batch_window=0.0
    )
    async with worker:
        await store.called("purge_dead").wait()
        await store.called("purge_succeeded").wait()
    assert worker.state is WorkerState.STOPPED


async def test_success_without_retention_and_heartbeats_for_running_jobs(
    registry: TaskRegistry, log: Log
) -> None:
    """Heartbeats extend leases of running jobs; retention 0 asks the store to delete."""
    store = FakeStore()
    store.add("t.x", '{"do": "hang"}')
    worker = make(store, registry, lease=0.03, retention=0.0, shutdown_timeout=0.0)
    async with worker:
        await log.started.wait()
        await store.called("heartbeat").wait()
    assert store.called("unlisten").is_set()


async def test_a_worker_runs_once() -> None:
    """Running a worker a second time is a misuse error."""
    worker = Worker(FakeStore(), TaskRegistry(), poll_interval=0.01)
    await worker.run(until_empty=True)
    with pytest.raises(RuntimeError, match="already ran"):
        await worker.run()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("concurrency", 0),
        ("batch_size", 0),
        ("prefetch", -1),
        ("lease", 0.0),
        ("poll_interval", -1.0),
        ("job_timeout", 0.0),
        ("retention", -1.0),
        ("dead_retention", -1.0),
        ("shutdown_timeout", -1.0),
        ("batch_window", -0.1),
    ],
)
def test_bad_options_are_rejected_by_name(option: str, value: float) -> None:
    """Each invalid option raises ValueError naming it."""
    with pytest.raises(ValueError, match=option):
        Worker(FakeStore(), TaskRegistry(), **{option: value})  # type: ignore[arg-type]


def test_worker_names_are_unique_and_overridable() -> None:
    """The default name carries host and pid; an explicit name is kept."""
    a, b = Worker(FakeStore(), TaskRegistry()), Worker(FakeStore(), TaskRegistry())
    assert a.name != b.name
    assert Worker(FakeStore(), TaskRegistry(), name="w1").name == "w1"


async def test_permanent_failure_is_logged_with_its_traceback(
    registry: TaskRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A permanent failure logs at ERROR with the exception attached."""
    store = FakeStore()
    store.add("t.x", '{"do": "boom"}')
    with caplog.at_level(logging.ERROR, "apitask.outbox"):
        await make(store, registry).run(until_empty=True)
    assert any(r.exc_info for r in caplog.records if "failed permanently" in r.message)

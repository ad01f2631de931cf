"""The pool's pure bookkeeping: admission, leftovers, wake-ups."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque

import apitask
from apitask import LeftoverState
from apitask._pool_loop import wake_all, wake_one
from apitask._pool_state import Admission, Job, PoolBook


def noop(type: str = "test.job") -> apitask.FunctionTask[[float]]:
    return apitask.task(type, asyncio.sleep, 0)


def job(type: str = "test.job") -> Job:
    return Job(noop(type), PoolBook(1).stats(type))


def test_admit_queues_until_capacity_and_only_while_running() -> None:
    """CREATED and DRAINING refuse; RUNNING queues up to capacity, then reports FULL."""
    book = PoolBook(capacity=2)
    assert book.admit(noop()) is Admission.CLOSED
    book.open()
    assert [book.admit(noop()) for _ in range(3)] == [
        Admission.QUEUED,
        Admission.QUEUED,
        Admission.FULL,
    ]
    book.begin_drain()
    assert book.admit(noop()) is Admission.CLOSED


def test_oldest_age_follows_the_head_of_the_queue() -> None:
    """The age is that of the first queued job on the book's clock; 0 when empty."""
    now = 100.0
    book = PoolBook(capacity=10, clock=lambda: now)
    book.open()
    assert book.oldest_age == 0.0
    book.admit(noop())
    now = 105.0
    book.admit(noop())
    now = 110.0
    assert book.oldest_age == 10.0
    book.take()
    assert book.oldest_age == 5.0


def test_drained_only_when_draining_and_nothing_is_left() -> None:
    """Queued, running and retrying jobs each keep the drain open."""
    book = PoolBook(capacity=10)
    book.open()
    task = noop()
    book.admit(task)
    book.begin_drain()
    assert not book.drained
    first = book.take()
    assert first is not None and first.task is task and not book.drained
    book.wait_retry(first)
    assert book.running == 0 and not book.drained
    book.retry_due(first)
    assert book.take() is first
    book.finish(first)
    assert first.done and book.drained


def test_leftovers_classify_every_job_that_did_not_complete() -> None:
    """Queued, retrying, cancelled and stuck jobs are described; finished ones are not."""
    book = PoolBook(capacity=10)
    queued, retrying, cancelled, stuck, finished, in_thread = (job(f"t.{i}") for i in range(6))
    finished.done = True
    in_thread.thread = concurrent.futures.Future()  # still running in its thread
    lefts = book.leftovers(
        [(queued.task, "req-1")], [retrying], [cancelled, stuck, finished, in_thread], [stuck]
    )
    assert [(left.type, left.state) for left in lefts] == [
        ("t.0", LeftoverState.QUEUED),
        ("t.1", LeftoverState.RETRYING),
        ("t.2", LeftoverState.CANCELLED),
        ("t.3", LeftoverState.STUCK),
        ("t.5", LeftoverState.STUCK),
    ]


def test_sync_function_tasks_are_marked_for_the_thread_pool() -> None:
    """Sync FunctionTasks run on threads; async ones and other tasks on the loop."""

    def sync_fn() -> None:
        return None

    stats = PoolBook(1).stats("t")
    assert Job(apitask.task("t", sync_fn), stats).is_sync
    assert not Job(apitask.task("t", asyncio.sleep, 0), stats).is_sync


async def test_wake_helpers_skip_waiters_that_gave_up() -> None:
    """A cancelled waiter left in the deque is dropped, never woken twice or raised on."""
    loop = asyncio.get_running_loop()
    gave_up, waiting = loop.create_future(), loop.create_future()
    gave_up.cancel()
    waiters = deque([gave_up])
    wake_one(waiters)
    assert not waiters
    waiters = deque([gave_up, waiting])
    wake_all(waiters)
    assert not waiters and waiting.result() is None

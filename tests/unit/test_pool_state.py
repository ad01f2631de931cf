"""PoolBook alone: the pool's rules as a synchronous state machine, no event loop.

Each test drives the book through its methods and checks the action it
returns, as the driver in apitask._pool would perform it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses

import pytest

import apitask
from apitask import Backoff, LeftoverState, Outcome, PoolState, TransientError
from apitask._pool_state import (
    Admission,
    Cancel,
    Done,
    Drain,
    FullPolicy,
    Idle,
    PoolBook,
    PoolEntry,
    Retry,
    RunInline,
)

FAST = Backoff(base=1.0, cap=4.0, max_attempts=3)


def noop(type: str = "test.job") -> apitask.FunctionTask[[float]]:
    return apitask.task(type, asyncio.sleep, 0)


def running_book(capacity: int = 10, when_full: FullPolicy = "inline") -> PoolBook:
    book = PoolBook(capacity, when_full, FAST, rng=lambda: 0.0)
    book.open()
    return book


def take(book: PoolBook) -> PoolEntry:
    entry = book.take()
    assert isinstance(entry, PoolEntry)
    return entry


def test_admit_queues_until_capacity_and_only_while_running() -> None:
    """CREATED and DRAINING answer CLOSED; RUNNING queues up to capacity, then the policy."""
    book = PoolBook(capacity=2, when_full="reject")
    assert book.admit(noop()) is Admission.CLOSED
    book.open()
    assert [book.admit(noop()) for _ in range(3)] == [
        Admission.QUEUED,
        Admission.QUEUED,
        Admission.REJECT,
    ]
    assert book.counters().snapshot() == {"test.job": {"submitted": 2}}
    assert book.begin_drain() is Drain.WAIT
    assert book.admit(noop()) is Admission.CLOSED


@pytest.mark.parametrize(
    ("when_full", "action"),
    [("wait", Admission.WAIT), ("reject", Admission.REJECT), ("spill", Admission.SPILL)],
)
def test_a_full_queue_answers_with_the_policy_and_counts_nothing(
    when_full: FullPolicy, action: Admission
) -> None:
    """wait, reject and spill leave the task to the driver: it is not counted yet."""
    book = running_book(capacity=1, when_full=when_full)
    book.admit(noop("test.first"))
    assert book.admit(noop("test.over")) is action
    assert "test.over" not in book.counters().snapshot()
    book.count_spilled("test.over")  # the driver's spill sink took it
    assert book.counters().snapshot()["test.over"] == {"spilled": 1}


def test_a_full_queue_with_the_inline_policy_hands_back_a_started_job() -> None:
    """inline: the entry is submitted, running and in its first attempt, but not queued."""
    book = running_book(capacity=1)
    book.admit(noop())
    task = noop()
    action = book.admit(task, "req-1")
    assert isinstance(action, RunInline)
    entry = action.entry
    assert (entry.task, entry.inline, entry.attempt) == (task, True, 1)
    assert list(book.running) == [entry] and len(book.queue) == 1
    assert book.counters().snapshot()["test.job"] == {"submitted": 2, "started": 1}
    assert book.finish(entry, None) == Done()
    assert not book.running


def test_take_starts_the_next_job_in_order_or_tells_the_worker_to_wait_or_exit() -> None:
    """FIFO; a taken entry is running, in attempt 1, with its request id; an empty
    queue means wait while the pool runs, and exit once it is closed."""
    book = running_book()
    assert book.take() is Idle.WAIT
    first, second = noop("t.1"), noop("t.2")
    book.admit(first, "req-1")
    book.admit(second)
    entry = take(book)
    assert (entry.task, entry.request_id, entry.attempt, entry.inline) == (first, "req-1", 1, False)
    assert list(book.running) == [entry]
    assert take(book).task is second
    assert book.take() is Idle.WAIT
    book.close()
    assert book.take() is Idle.EXIT


def test_finish_counts_success_and_final_failure() -> None:
    """Returned: Done without error. A non-transient exception: Done with it, final."""
    book = running_book()
    book.admit(noop("t.ok"))
    book.admit(noop("t.bad"))
    assert book.finish(take(book), None) == Done()
    error = ValueError("bad address")
    assert book.finish(take(book), error) == Done(error)
    assert book.counters().snapshot() == {
        "t.ok": {"submitted": 1, "started": 1, "succeeded": 1},
        "t.bad": {"submitted": 1, "started": 1, "failed": 1},
    }
    assert not book.running


def test_a_transient_failure_retries_after_the_backoff_delay_until_attempts_run_out() -> None:
    """Retry(delay) per next_delay; retry_due queues the entry again (above capacity);
    the last allowed attempt's failure is final."""
    book = running_book(capacity=1)
    book.admit(noop())
    error = TransientError("try later")
    entry = take(book)
    assert book.finish(entry, error) == Retry(0.5, error)  # base 1.0, jitter 0: half
    assert book.retrying == {entry} and not book.running
    book.admit(noop("t.filler"))  # the queue is full again
    assert book.retry_due(entry) is Admission.QUEUED
    assert len(book.queue) == 2 and not book.retrying  # the retry is not refused
    take(book)  # the filler
    assert take(book) is entry and entry.attempt == 2
    assert book.finish(entry, error) == Retry(1.0, error)
    book.retry_due(entry)
    assert take(book).attempt == 3
    assert book.finish(entry, error) == Done(error)
    stats = book.counters()
    assert stats.get("test.job", Outcome.RETRIED) == 2
    assert stats.get("test.job", Outcome.STARTED) == 3
    assert stats.get("test.job", Outcome.FAILED) == 1


def test_retry_after_wins_over_the_backoff() -> None:
    """The failing side's retry_after is the delay."""
    book = running_book()
    book.admit(noop())
    error = TransientError("busy", retry_after=7.0)
    assert book.finish(take(book), error) == Retry(7.0, error)


def test_a_transient_failure_after_close_is_final() -> None:
    """Once the pool is closed no retry could run: the failure is final."""
    book = running_book()
    book.admit(noop())
    entry = take(book)
    book.close()
    error = TransientError("try later")
    assert book.finish(entry, error) == Done(error)


def test_the_drain_waits_for_queued_running_and_retrying_jobs() -> None:
    """begin_drain says whether anything is in flight; the Done of the last entry says
    the drain may stop waiting, and no Done before it does."""
    idle = running_book()
    assert idle.begin_drain() is Drain.NOTHING

    book = running_book()
    book.admit(noop())
    book.admit(noop())
    assert book.begin_drain() is Drain.WAIT
    first = take(book)
    error = TransientError("try later")
    assert isinstance(book.finish(first, error), Retry)  # retrying: still in flight
    second = take(book)
    assert book.finish(second, None) == Done(drained=False)
    book.retry_due(first)
    assert take(book) is first
    assert book.finish(first, None) == Done(drained=True)


def test_a_cancelled_inline_job_is_done_and_can_end_the_drain() -> None:
    """The caller running an entry inline was cancelled: the entry is done, counted cancelled."""
    book = running_book(capacity=1)
    book.admit(noop())
    action = book.admit(noop("t.inline"))
    assert isinstance(action, RunInline)
    book.finish(take(book), None)
    book.begin_drain()
    assert book.cancelled(action.entry) == Done(drained=True)
    assert action.entry.done
    assert book.counters().get("t.inline", Outcome.CANCELLED) == 1


def test_close_returns_what_will_not_run_and_what_to_cancel() -> None:
    """Queued tasks (a retry back in the queue included) with their request ids,
    retrying entries, and the entries running on workers; not an inline entry."""
    book = running_book(capacity=3)
    for i in range(3):
        book.admit(noop(f"t.{i}"), f"req-{i}")
    running, retried, waiting = take(book), take(book), take(book)
    error = TransientError("try later")
    book.finish(retried, error)
    book.retry_due(retried)
    book.finish(waiting, error)
    queued, fits = noop("t.queued"), noop("t.fits")
    book.admit(queued, "req-q")
    book.admit(fits)
    action = book.admit(noop("t.inline"))
    assert isinstance(action, RunInline)
    cancel = book.close()
    assert cancel == Cancel(
        queued=((retried.task, "req-1"), (queued, "req-q"), (fits, None)),
        retrying=(waiting,),
        running=(running,),
    )
    assert book.state is PoolState.CLOSED
    assert not book.queue and not book.queued_at and not book.request_ids and not book.retrying
    assert book.oldest_age == 0.0


def test_leftovers_classify_every_job_that_did_not_complete() -> None:
    """Queued, retrying, cancelled and stuck entries are described; finished ones are not.

    A running entry is CANCELLED when its worker let go of it; STUCK when the
    worker did not, or its sync attempt still holds a thread.
    """
    book = running_book()
    for i in range(5):
        book.admit(noop(f"t.{i}"))
    retrying = take(book)
    book.finish(retrying, TransientError("later"))
    cancelled, ignores, finished, in_thread = take(book), take(book), take(book), take(book)
    queued = noop("t.queued")
    book.admit(queued, "req-1")
    in_thread.thread = concurrent.futures.Future()  # still running in its thread
    cancel = book.close()
    book.cancelled(cancelled)
    book.cancelled(in_thread)  # its worker let go, its thread did not
    book.finish(finished, None)  # swallowed the cancellation, then returned
    lefts = book.leftovers(cancel)
    assert [(left.type, left.state, left.request_id) for left in lefts] == [
        ("t.queued", LeftoverState.QUEUED, "req-1"),
        ("t.0", LeftoverState.RETRYING, None),
        ("t.1", LeftoverState.CANCELLED, None),
        ("t.2", LeftoverState.STUCK, None),
        ("t.4", LeftoverState.STUCK, None),
    ]
    assert not ignores.cancelled
    report = book.report(True, [dataclasses.replace(lefts[0], spilled=True), *lefts[1:]])
    assert report.timed_out and len(report.spilled) == 1 and len(report.abandoned) == 4
    counts = book.counters()
    assert counts.get("t.queued", Outcome.SPILLED) == 1
    assert counts.get("t.1", Outcome.CANCELLED) == 1
    assert counts.get("t.1", Outcome.ABANDONED) == 1


def test_oldest_age_follows_the_head_of_the_queue() -> None:
    """The age is that of the first queued entry on the book's clock; 0 when empty."""
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


def test_sync_function_tasks_are_marked_for_the_thread_pool() -> None:
    """Sync FunctionTasks run on threads; async ones and other tasks on the loop."""

    def sync_fn() -> None:
        return None

    stats = PoolBook(1).stats("t")
    assert PoolEntry(apitask.task("t", sync_fn), stats).is_sync
    assert not PoolEntry(apitask.task("t", asyncio.sleep, 0), stats).is_sync

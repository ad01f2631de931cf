"""WorkerPool from sync code: WSGI threads submit, a pool on its own loop thread."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import apitask
from apitask import Outcome, PoolClosedError, PoolState, QueueFullError, WorkerPool


def pool_loop_threads() -> list[threading.Thread]:
    """The live threads start_sync made for a pool's loop (named for it)."""
    return [t for t in threading.enumerate() if t.name == "apitask-pool-loop" and t.is_alive()]


async def test_submit_sync_from_several_threads_runs_every_task_once() -> None:
    """8 threads x 100 submit_sync calls (a WSGI server's handlers): each runs once."""
    runs: dict[tuple[int, int], int] = {}

    async def mark(key: tuple[int, int]) -> None:
        runs[key] = runs.get(key, 0) + 1  # on the pool's loop: no race

    def handler_thread(t: int, pool: WorkerPool) -> None:
        for i in range(100):
            pool.submit_sync(apitask.task("test.wsgi", mark, (t, i)))

    async with WorkerPool(workers=4, queue_size=10) as pool:
        await asyncio.gather(*(asyncio.to_thread(handler_thread, t, pool) for t in range(8)))
    assert sorted(runs) == [(t, i) for t in range(8) for i in range(100)]
    assert set(runs.values()) == {1}
    assert pool.counters.get("test.wsgi", Outcome.SUCCEEDED) == 800


async def test_submit_sync_applies_the_full_queue_policy() -> None:
    """From a thread, 'reject' raises QueueFullError just as submit does."""
    started, release = asyncio.Event(), asyncio.Event()

    async def gate() -> None:
        started.set()
        await release.wait()

    async with WorkerPool(workers=1, queue_size=1, when_full="reject") as pool:
        await pool.submit(apitask.task("test.gate", gate))
        await started.wait()
        await pool.submit(apitask.task("test.queued", asyncio.sleep, 0))
        with pytest.raises(QueueFullError):
            await asyncio.to_thread(pool.submit_sync, apitask.task("test.full", asyncio.sleep, 0))
        release.set()


async def test_submit_sync_on_a_loop_thread_is_refused() -> None:
    """submit_sync would block the loop it is called on: RuntimeError says what to do."""
    async with WorkerPool(workers=1) as pool:
        with pytest.raises(RuntimeError, match=r"await pool\.submit"):
            pool.submit_sync(apitask.task("test.noop", asyncio.sleep, 0))
        with pytest.raises(RuntimeError, match=r"await pool\.aclose"):
            pool.close_sync()


async def test_close_sync_from_a_thread_drains_a_pool_started_on_a_loop() -> None:
    """close_sync works for any started pool, not only one started with start_sync."""
    ran = threading.Event()

    async def mark() -> None:
        ran.set()

    pool = WorkerPool(workers=1)
    await pool.start()
    await pool.submit(apitask.task("test.mark", mark))
    report = await asyncio.to_thread(pool.close_sync)
    assert report.complete and ran.is_set()


def test_submit_sync_before_start_and_after_close_raises_pool_closed() -> None:
    """No loop to hand the task to: PoolClosedError, the task not run."""
    pool = WorkerPool(workers=1)
    with pytest.raises(PoolClosedError, match="created"):
        pool.submit_sync(apitask.task("test.noop", asyncio.sleep, 0))
    assert pool.close_sync().complete
    with pytest.raises(PoolClosedError, match="closed"):
        pool.submit_sync(apitask.task("test.noop", asyncio.sleep, 0))


def test_pool_on_its_own_loop_thread_runs_sync_and_async_tasks() -> None:
    """start_sync/close_sync: a WSGI app's pool; its drain waits for every task."""
    done: list[str] = []
    lock = threading.Lock()

    def sync_work(i: int) -> None:
        with lock:
            done.append(f"sync{i}")

    async def async_work(i: int) -> None:
        done.append(f"async{i}")

    pool = WorkerPool(workers=2)
    pool.start_sync()
    assert pool.state is PoolState.RUNNING
    with pytest.raises(RuntimeError, match="started once"):
        pool.start_sync()

    def handler(i: int) -> None:
        pool.submit_sync(apitask.task("test.sync", sync_work, i))
        pool.submit_sync(apitask.task("test.async", async_work, i))

    with ThreadPoolExecutor(4) as threads:
        list(threads.map(handler, range(20)))
    report = pool.close_sync()
    assert report.complete
    assert sorted(done) == sorted(
        [f"sync{i}" for i in range(20)] + [f"async{i}" for i in range(20)]
    )
    assert not pool_loop_threads()


async def test_async_code_on_another_loop_can_submit_and_close() -> None:
    """A pool running on its own thread accepts submit/aclose from this loop too."""
    ran = threading.Event()

    async def mark() -> None:
        ran.set()

    pool = WorkerPool(workers=1)
    await asyncio.to_thread(pool.start_sync)
    await pool.submit(apitask.task("test.cross_loop", mark))
    report = await pool.aclose()
    assert report.complete and ran.is_set()
    for thread in pool_loop_threads():  # aclose from another loop does not join it
        await asyncio.to_thread(thread.join)


def test_a_pool_whose_loop_closed_without_aclose_refuses_work() -> None:
    """The loop is gone: submit_sync raises PoolClosedError, not a bare RuntimeError."""
    pool = WorkerPool(workers=1)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(pool.start())
    workers = asyncio.all_tasks(loop)
    for worker in workers:
        worker.cancel()
    loop.run_until_complete(asyncio.wait(workers))
    loop.close()
    with pytest.raises(PoolClosedError, match="event loop is closed"):
        pool.submit_sync(apitask.task("test.orphan", asyncio.sleep, 0))

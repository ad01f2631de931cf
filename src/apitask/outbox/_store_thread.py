"""The SQLite store's thread: runs its database work in order, off the event loop.

One dedicated thread per store takes work from a ``queue.SimpleQueue`` and
hands results back with one ``loop.call_soon_threadsafe`` per round. That is
about half the cost of ``run_in_executor`` per call (no
``concurrent.futures`` future chained to an asyncio one), which matters when
a transaction itself takes tens of microseconds.

Batchable items (the store's own-transaction inserts) that are waiting in
the queue together are handed to one ``run_batch`` call, so the store can
commit them in one transaction (group commit). Each item is still answered
on its own, and only after ``run_batch`` returns, that is after the commit
that holds its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["ItemResult", "StoreThread"]

T = TypeVar("T")

ItemResult = tuple[Any, BaseException | None]
"""What one batched item came to: ``(result, None)`` or ``(None, error)``.

(Not :class:`apitask.Outcome`, the counters' enum of how a task ended.)"""

_Settled = list[tuple["asyncio.Future[Any]", Any, BaseException | None]]


@dataclass(slots=True)
class _Request:
    """One piece of work: a call, or an item for ``run_batch``."""

    call: Callable[[], Any] | None
    item: Any
    # The caller's loop, or None for a caller in a thread without one (whose
    # future is then a concurrent.futures.Future).
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | Future[Any]


_Round = list[tuple[_Request, Any, BaseException | None]]


def _resolve(settled: _Settled) -> None:
    """Answer the callers of one round (on their event loop)."""
    for future, result, error in settled:
        if future.done():
            continue  # the caller was cancelled; what was done stays done
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class StoreThread:
    """A thread that runs calls and batches of items in the order they come.

    Args:
        run_batch: runs waiting items together; returns one :data:`ItemResult`
            per item, in order. Called in this thread.
        name: the thread's name.
    """

    def __init__(
        self, run_batch: Callable[[Sequence[Any]], Sequence[ItemResult]], *, name: str
    ) -> None:
        self._run_batch = run_batch
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        # Held to put work and to stop: nothing can be queued after the stop,
        # where no one would ever take it (a caller in another thread would
        # wait forever).
        self._lock = threading.Lock()
        self._stopped = False
        # Daemon: a store nobody closed must not keep the process from exiting;
        # an unfinished transaction then rolls back, as on any crash.
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    # -- from the event loop ------------------------------------------------------

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn()`` in the thread; the future holds its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_Request(fn, None, loop, future))
        return future

    def submit(self, item: object) -> asyncio.Future[Any]:
        """Hand ``item`` to ``run_batch`` (with the others waiting then)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._put(_Request(None, item, loop, future))
        return future

    def stop(self) -> None:
        """End the thread once the work queued before this is done."""
        with self._lock:
            self._stopped = True
            self._queue.put(None)

    def _put(self, request: _Request) -> None:
        with self._lock:
            if self._stopped:
                # What the driver says of a closed connection: an OutboxError
                # for the store's callers, as any other database error.
                raise sqlite3.ProgrammingError("the store is closed")
            self._queue.put(request)

    # -- from a thread without an event loop -------------------------------------

    def submit_sync(self, item: object) -> Any:
        """:meth:`submit`, waiting in the calling thread."""
        future: Future[Any] = Future()
        self._put(_Request(None, item, None, future))
        return future.result()

    # -- in the thread ----------------------------------------------------------------

    def _serve(self) -> None:
        held: list[_Request | None] = []  # taken from the queue, not run yet
        while True:
            request = held.pop() if held else self._queue.get()
            if request is None:
                return
            if request.call is not None:
                self._answer(self._round_of_one(request))
                continue
            batch = [request]
            # Whatever is already waiting goes in the same round: a busy
            # store commits many rows per transaction, an idle one at once.
            while True:
                try:
                    waiting = self._queue.get_nowait()
                except queue.Empty:
                    break
                if waiting is None or waiting.call is not None:
                    held.append(waiting)  # a call or the stop: after this batch
                    break
                batch.append(waiting)
            self._answer(self._round_of_many(batch))

    @staticmethod
    def _round_of_one(request: _Request) -> _Round:
        assert request.call is not None
        try:
            return [(request, request.call(), None)]
        except BaseException as exc:  # handed to the caller, who raises it
            return [(request, None, exc)]

    def _round_of_many(self, batch: list[_Request]) -> _Round:
        try:
            results = self._run_batch([request.item for request in batch])
        except BaseException as exc:  # a bug in run_batch: every caller hears of it
            return [(request, None, exc) for request in batch]
        return [
            (request, result, error)
            for request, (result, error) in zip(batch, results, strict=True)
        ]

    @staticmethod
    def _answer(round: _Round) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, _Settled] = {}
        for request, result, error in round:
            if request.loop is None:
                sync = request.future
                assert isinstance(sync, Future)
                if error is None:
                    sync.set_result(result)
                else:
                    sync.set_exception(error)
            else:
                settled = by_loop.setdefault(request.loop, [])
                settled.append((request.future, result, error))  # type: ignore[arg-type]
        for loop, settled in by_loop.items():
            # One wake-up of each loop per round, however many callers it has.
            # A closed loop has nobody left waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, settled)

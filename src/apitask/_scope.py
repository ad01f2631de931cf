"""Request scopes: the tasks one request started, and waiting for them.

A scope lives in a :class:`~contextvars.ContextVar`, so every coroutine a
request runs (and every task it starts, which copies the context) sees the
same scope without passing it around. This is GoTrue's ``apitask.With`` /
``Run`` / ``Wait`` done with the tools Python gives us.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import enum
import logging
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from ._background import background_loop, running_loop
from ._counters import Outcome, TaskCounters
from ._exceptions import TaskError
from ._options import check_sink, check_timeout

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from types import TracebackType

    from ._types import Task, TaskSink

__all__ = [
    "RequestScope",
    "ScopeState",
    "WaitReport",
    "activate",
    "current_scope",
    "deactivate",
    "run",
    "scope",
    "scope_counters",
    "wait",
]

logger = logging.getLogger("apitask")

scope_counters = TaskCounters()
"""Outcomes of every task run in a request scope in this process, by type."""

_current: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "apitask_scope", default=None
)

# Guards binding a scope to its loop against a concurrent close from another
# thread (a WSGI scope is bound by its first run_sync). Held for a few
# attribute reads and writes only.
_bind_lock = threading.Lock()


class ScopeState(enum.Enum):
    """Lifecycle of a request scope."""

    OPEN = "open"
    """Accepting tasks."""
    CLOSED = "closed"
    """Waited (or being waited): every later :func:`run` raises :class:`TaskError`."""


# The members every request reads, as module globals: on Python 3.11 reading
# an Enum member off its class costs 0.13 µs (timeit), a global 0.006 µs, and
# a request with one task read three of them (issue 19, P8).
_OPEN = ScopeState.OPEN
_CLOSED = ScopeState.CLOSED
_SUCCEEDED = Outcome.SUCCEEDED


@dataclass(frozen=True, slots=True)
class WaitReport:
    """What happened to the tasks of a scope, as known when its wait returned.

    Attributes:
        succeeded: tasks that returned normally.
        failed: tasks that raised (each was logged at ERROR).
        cancelled: the type of every task cancelled because the wait deadline passed.
        abandoned: the type of every cancelled task that was still running when
            the wait gave up on it (it ignored cancellation).
    """

    succeeded: int = 0
    failed: int = 0
    cancelled: tuple[str, ...] = ()
    abandoned: tuple[str, ...] = ()


class RequestScope:
    """The tasks started by one request (or any unit of work).

    Create one with :func:`scope` (or let a middleware do it); use its methods
    directly only when writing an integration.

    A scope belongs to one event loop, where its tasks run: the loop it was
    created for, else the loop of its first task. Sync code (a WSGI request
    thread, a sync endpoint run in a thread pool) reaches it through
    :meth:`start_threadsafe` and :meth:`wait_sync`; a scope first used from
    sync code runs its tasks on apitask's background loop.

    Args:
        request_id: carried into the log record of every failing task.
        sink: when given, :func:`run` hands tasks to it (a worker pool, an
            outbox) instead of running them in this scope, so waiting does
            not wait for them.
        loop: the event loop the tasks run on (default: as above).
    """

    __slots__ = (
        "_failed",
        "_loop",
        "_state",
        "_succeeded",
        "_succeeded_by_type",
        "_tasks",
        "_waiters",
        "request_id",
        "sink",
    )

    def __init__(
        self,
        *,
        request_id: str | None = None,
        sink: TaskSink | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.request_id = request_id
        self.sink = sink
        self._loop = loop
        self._state = _OPEN
        # asyncio.Task -> the apitask Task it runs. Holding the asyncio task
        # here is also what keeps it from being garbage-collected mid-flight.
        self._tasks: dict[asyncio.Task[None], Task] = {}
        # One future per pending wait (a list only for concurrent waits),
        # resolved when the last task ends: no asyncio.Event (an object, a
        # deque and a loop lookup) per request.
        self._waiters: asyncio.Future[None] | list[asyncio.Future[None]] | None = None
        self._succeeded = 0
        self._failed = 0
        # Successes are tallied here and added to scope_counters when the
        # scope falls idle: one locked update per type, not one per task
        # (measured: docs/core.md, "Performance notes"). Made by the first
        # success: most requests run no task.
        self._succeeded_by_type: dict[str, int] | None = None

    @property
    def state(self) -> ScopeState:
        """Whether the scope still accepts tasks."""
        return self._state

    @property
    def pending(self) -> int:
        """Number of tasks started here that have not finished."""
        return len(self._tasks)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the tasks run on, once known."""
        return self._loop

    def ensure_open(self, task: Task) -> None:
        """Raise :class:`TaskError` if the scope no longer accepts tasks."""
        if self._state is not ScopeState.OPEN:
            raise TaskError(
                f"cannot run task {task.type!r}: its request scope was already waited; "
                "the task was not run"
            )

    def start(self, task: Task) -> None:
        """Start ``task`` concurrently on the running loop and return at once.

        Raises:
            TaskError: the scope was already waited, or it belongs to another
                event loop (use :meth:`start_threadsafe` from there).
        """
        self._spawn(task, asyncio.get_running_loop(), None)

    def _spawn(
        self,
        task: Task,
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None,
    ) -> None:
        # Runs on the scope's loop only, so state, the task table and the
        # idle event are only ever touched from one thread: no lock needed.
        if self._state is not _OPEN:
            self.ensure_open(task)  # raises
        if self._loop is not loop:
            if self._loop is not None:
                raise TaskError(
                    f"cannot run task {task.type!r}: its request scope belongs to another "
                    "event loop; use start_threadsafe()"
                )
            self._loop = loop
        # The coroutine learns its own asyncio task from this slot, filled before
        # its first step: cheaper than asyncio.current_task() in its last step
        # (on 3.11 that looks the running loop up, with a getpid() system call).
        slot: list[asyncio.Task[None] | None] = [None]
        coro = self._supervised(task, slot)
        running = loop.create_task(coro, context=context)
        slot[0] = running
        if not running.done():  # an eager task factory may have run it to the end already
            self._tasks[running] = task

    def start_threadsafe(self, task: Task) -> concurrent.futures.Future[None]:
        """Start ``task`` on the scope's loop from any thread.

        The returned future resolves once the task is registered (not once it
        has run), or fails with :class:`TaskError` if the scope refused it.
        The task sees the caller's context variables.

        Raises:
            TaskError: the scope was already waited, or its loop is closed.
        """
        with _bind_lock:
            self.ensure_open(task)
            loop = self._loop
            if loop is None:
                loop = self._loop = background_loop()
        context = contextvars.copy_context()
        registered: concurrent.futures.Future[None] = concurrent.futures.Future()

        def register() -> None:
            try:
                self._spawn(task, loop, context)
            except Exception as exc:  # e.g. closed between the check above and now
                registered.set_exception(exc)  # never leave the caller waiting
            else:
                registered.set_result(None)

        try:
            loop.call_soon_threadsafe(register)
        except RuntimeError as exc:
            raise TaskError(
                f"cannot run task {task.type!r}: the event loop of its request scope is closed"
            ) from exc
        return registered

    async def _supervised(self, task: Task, slot: list[asyncio.Task[None] | None]) -> None:
        # The bookkeeping runs in the task's own last step rather than in a
        # done callback: a waiter wakes one loop iteration sooner, and no
        # callback is scheduled per task (measured: docs/core.md, "Performance notes").
        try:
            await task.run()
        except asyncio.CancelledError:
            scope_counters.add(task.type, Outcome.CANCELLED)
            raise
        except Exception as exc:
            self._failed += 1
            scope_counters.add(task.type, Outcome.FAILED)
            logger.error(
                'apitask: error running "%s": %s',
                task.type,
                exc,
                exc_info=exc,
                extra={"action": "apitask", "task_type": task.type, "request_id": self.request_id},
            )
        else:
            self._succeeded += 1
            tally = self._succeeded_by_type
            if tally is None:
                self._succeeded_by_type = {task.type: 1}
            else:
                tally[task.type] = tally.get(task.type, 0) + 1
        finally:
            self._release(slot[0])

    def _release(self, running: asyncio.Task[None] | None) -> None:
        # None: an eager task factory ran the task to its end inside
        # create_task, before it was registered (or its slot filled).
        if running is not None:
            self._tasks.pop(running, None)
        if not self._tasks:
            self._flush_counts()
            waiters = self._waiters
            if waiters is not None:
                self._waiters = None
                if isinstance(waiters, list):
                    for waiter in waiters:
                        _wake(waiter)
                elif not waiters.done():  # _wake inline: the one waiter of every request
                    waiters.set_result(None)

    def _flush_counts(self) -> None:
        tally = self._succeeded_by_type
        if tally is not None:
            self._succeeded_by_type = None
            for type, n in tally.items():
                scope_counters.add(type, _SUCCEEDED, n)

    def close(self) -> None:
        """Stop accepting tasks; the ones already started go on (``wait`` closes first)."""
        self._state = ScopeState.CLOSED

    async def wait(self, timeout: float | None = None) -> WaitReport:
        """Close the scope to new tasks and wait for every task in it.

        Tasks started by tasks before the close are waited for too. Waiting
        again (or concurrently) is fine. Awaited on another loop than the
        scope's, it waits there without blocking this one.

        Args:
            timeout: seconds to wait at most. Tasks still running then are
                cancelled and their cancellation awaited (for up to ``timeout``
                again); each is logged at WARNING and reported by type.
        """
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            return await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self.wait(timeout), loop)
            )
        self.close()
        cancelled: tuple[str, ...] = ()
        abandoned: tuple[str, ...] = ()
        if self._tasks:
            # A task is pending, so the scope is bound to its loop, this one.
            idle = self._idle_waiter(cast("asyncio.AbstractEventLoop", self._loop))
            if timeout is None:  # the common case, without a timer to arm and disarm
                await idle
            else:
                try:
                    async with asyncio.timeout(timeout):
                        await idle
                except TimeoutError:
                    cancelled, abandoned = await self._cancel_stragglers(timeout)
        return WaitReport(self._succeeded, self._failed, cancelled, abandoned)

    def _idle_waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        # A future resolved when the last task ends. Only called with a task
        # pending, so the scope is bound to its loop (given), the running one.
        idle = loop.create_future()
        waiters = self._waiters
        if waiters is None:
            self._waiters = idle
        elif isinstance(waiters, list):
            waiters.append(idle)
        else:
            self._waiters = [waiters, idle]
        return idle

    def settle(self, timeout: float | None = None) -> Awaitable[object] | None:
        """Close the scope; return what to await for its tasks, or None when none is left.

        For integrations (the ASGI middleware): :meth:`wait` without its
        report. With no timeout, on the scope's own loop, the awaitable is a
        bare future rather than a coroutine: no frame and no report built
        per request (bench/middleware.py, issue 19). Otherwise it is
        :meth:`wait`'s coroutine, with every rule of :meth:`wait`.
        """
        if not self._tasks:
            self._state = _CLOSED
            return None
        loop = self._loop
        if timeout is None and loop is asyncio.get_running_loop():
            self._state = _CLOSED
            if self._waiters is not None:
                return self._idle_waiter(loop)
            # _idle_waiter inline for the one wait of every request (issue 19).
            idle: asyncio.Future[None] = loop.create_future()
            self._waiters = idle
            return idle
        return self.wait(timeout)

    async def drain(self, timeout: float | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Deprecated alias of :meth:`wait`: returns its report's ``(cancelled, abandoned)``.

        .. deprecated:: 0.1.0
            Use :meth:`wait`. A pool's drain is its shutdown; a scope is waited.
        """
        warnings.warn(
            "RequestScope.drain() is deprecated: use wait(), whose WaitReport has "
            ".cancelled and .abandoned",
            DeprecationWarning,
            stacklevel=2,
        )
        report = await self.wait(timeout)
        return report.cancelled, report.abandoned

    def wait_sync(self, timeout: float | None = None) -> WaitReport:
        """:meth:`wait` for sync code: block this thread until the tasks are done.

        Raises:
            RuntimeError: called on the scope's own loop, where blocking would
                deadlock (await :meth:`wait` there).
        """
        with _bind_lock:
            loop = self._loop
            if loop is None:  # no task ever ran here: nothing to wait for
                self.close()
            if loop is None or (self._state is ScopeState.CLOSED and not self._tasks):
                # Closed and empty stays empty: no need to ask the loop (a thread
                # round trip; docs/core.md, "Performance notes").
                return WaitReport(self._succeeded, self._failed)
        if running_loop() is loop:
            raise RuntimeError(
                "wait_sync() would block the event loop its tasks run on: await wait() instead"
            )
        return asyncio.run_coroutine_threadsafe(self.wait(timeout), loop).result()

    async def _cancel_stragglers(
        self, grace: float | None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        stragglers = dict(self._tasks)
        for running, task in stragglers.items():
            logger.warning(
                'apitask: task "%s" still running at the wait deadline: cancelled',
                task.type,
                extra={"action": "apitask", "task_type": task.type, "request_id": self.request_id},
            )
            running.cancel()
        done, still_running = await asyncio.wait(stragglers, timeout=grace)
        for running in done:
            if running in self._tasks:
                # Cancelled before its first step: its coroutine never ran, so
                # never released itself.
                scope_counters.add(stragglers[running].type, Outcome.CANCELLED)
                self._release(running)
        for running in still_running:
            scope_counters.add(stragglers[running].type, Outcome.ABANDONED)
        self._flush_counts()  # the abandoned keep the scope from falling idle
        return (
            tuple(task.type for task in stragglers.values()),
            tuple(stragglers[running].type for running in still_running),
        )


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # done: a wait that timed out or was cancelled
        waiter.set_result(None)


def current_scope() -> RequestScope | None:
    """Return the request scope of the current context, if one is open."""
    return _current.get()


def activate(scope: RequestScope) -> contextvars.Token[RequestScope | None]:
    """Make ``scope`` the current one; hand the token to :func:`deactivate`.

    For integrations (the middlewares); application code uses :func:`scope`.
    """
    return _current.set(scope)


def deactivate(token: contextvars.Token[RequestScope | None]) -> None:
    """Restore the scope that was current before :func:`activate`."""
    _current.reset(token)


class _ScopeContext:
    """The async context manager :func:`scope` returns."""

    __slots__ = ("_request_id", "_scope", "_sink", "_timeout", "_token")

    def __init__(
        self, request_id: str | None, sink: TaskSink | None, timeout: float | None
    ) -> None:
        self._request_id = request_id
        self._sink = sink
        self._timeout = timeout
        self._token: contextvars.Token[RequestScope | None] | None = None
        self._scope: RequestScope | None = None

    async def __aenter__(self) -> RequestScope:
        existing = _current.get()
        if existing is not None:
            # A scope inside a scope is the same scope (GoTrue's With is
            # idempotent): the outer owner waits for everything.
            return existing
        self._scope = RequestScope(
            request_id=self._request_id, sink=self._sink, loop=asyncio.get_running_loop()
        )
        self._token = _current.set(self._scope)
        return self._scope

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._scope is None or self._token is None:
            return
        try:
            await self._scope.wait(self._timeout)
        finally:
            _current.reset(self._token)


def scope(
    *,
    request_id: str | None = None,
    sink: TaskSink | None = None,
    timeout: float | None = None,
) -> _ScopeContext:
    """Open a request scope for the ``async with`` block, and wait for its tasks on exit.

    Inside an open scope this reuses that scope and waits for nothing on
    exit: the outermost owner waits. The block raising still waits for (and
    does not cancel) the tasks.

    Args:
        request_id: carried into the log record of every failing task.
        sink: hand tasks to this (a :class:`~apitask.WorkerPool`, an outbox)
            instead of running them in the scope.
        timeout: bound on the wait at exit; see :meth:`RequestScope.wait`.

    Raises:
        TypeError, ValueError: ``sink`` or ``timeout`` is not usable.
    """
    return _ScopeContext(request_id, check_sink(sink), check_timeout(timeout))


async def run(task: Task) -> None:
    """Hand ``task`` over: run it in the background of the current request.

    * Inside an open scope: start it concurrently and return at once. Its
      failure is logged (type, error, request id) and never raised here.
    * Inside a scope bound to a sink (a pool, an outbox): submit it there.
    * Outside any scope: run it inline and let its error propagate.

    A task may call ``run`` itself: while its scope is open the new task
    joins the scope (and the scope's wait covers it); once the scope is
    being waited, that ``run`` raises :class:`TaskError` inside the parent
    task, which fails and is logged. Nothing deadlocks.

    Raises:
        TaskError: the scope was already waited, or the sink refused the task.
            The task did not run.
    """
    current = _current.get()
    if current is None:
        await task.run()
    elif current.sink is not None:
        current.ensure_open(task)
        await current.sink.submit(task)
    else:
        loop = asyncio.get_running_loop()
        if current._loop is loop or current._loop is None:
            current._spawn(task, loop, None)
        else:
            # A coroutine on another loop than the scope's (asyncio.run inside
            # a WSGI handler): register over there, without blocking here.
            await asyncio.wrap_future(current.start_threadsafe(task))


async def wait(timeout: float | None = None) -> WaitReport:
    """Close the current scope to new tasks and wait for all of its tasks.

    A no-op outside a scope (it returns an empty report). See
    :meth:`RequestScope.wait` for ``timeout``.
    """
    current = _current.get()
    if current is None:
        return WaitReport()
    return await current.wait(timeout)

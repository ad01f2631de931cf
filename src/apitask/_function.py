"""Plain functions as tasks (GoTrue's ``apitask.Func``)."""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, cast, overload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

__all__ = ["FunctionTask", "task"]

P = ParamSpec("P")


class FunctionTask(Generic[P]):
    """A :class:`~apitask.Task` that calls a function with bound arguments.

    Async functions are awaited on the loop. Sync functions run in a worker
    thread (``asyncio.to_thread``), never on the event loop, so a blocking
    call in one cannot stall every other request.
    """

    __slots__ = ("_args", "_fn", "_kwargs", "is_async", "type")

    def __init__(
        self,
        type: str,
        fn: Callable[P, Awaitable[None]] | Callable[P, None],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> None:
        given: object = type  # callers without a type checker may pass anything
        if not isinstance(given, str) or not given:
            raise ValueError(f"a task type must be a non-empty string, got {type!r}")
        if not callable(fn):
            raise TypeError(f"task {type!r}: fn must be callable, got {fn!r}")
        self.type = type
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        # An `async def` function or method, told inline (task() is on every
        # request's path: issue 19); anything else asks _is_async.
        code = getattr(fn, "__code__", None)  # bound methods pass __code__ through
        self.is_async = (code is not None and code.co_flags & _CO_COROUTINE != 0) or _is_async(fn)

    def run(self) -> Coroutine[Any, Any, None]:
        """Call the function: awaited if async, in a worker thread if sync.

        A plain method returning the function's own coroutine (what an
        ``async def run`` would wrap in one more): a task costs one coroutine,
        not two.
        """
        if self.is_async:
            return cast("Coroutine[Any, Any, None]", self._fn(*self._args, **self._kwargs))
        fn = cast("Callable[P, None]", self._fn)
        return asyncio.to_thread(fn, *self._args, **self._kwargs)

    def run_sync(self) -> None:
        """Call a sync function in the calling thread (for WSGI code).

        Raises:
            TypeError: the function is async; use :meth:`run` on a loop.
        """
        if self.is_async:
            raise TypeError(f"task {self.type!r} wraps an async function: await run() instead")
        self._fn(*self._args, **self._kwargs)

    def __repr__(self) -> str:
        name = getattr(self._fn, "__qualname__", repr(self._fn))
        return f"<FunctionTask {self.type!r} {name}>"


_CO_COROUTINE = inspect.CO_COROUTINE


def _is_async(fn: object) -> bool:
    # What the inline test of an `async def` code object in FunctionTask
    # left: inspect.iscoroutinefunction costs microseconds, so only these
    # take it. (Sync ones take it too, which is nothing next to their thread hop.)
    # Partials, marked or decorated callables, objects with an async __call__.
    call = getattr(fn, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


@overload
def task(
    type: str, fn: Callable[P, Awaitable[None]], /, *args: P.args, **kwargs: P.kwargs
) -> FunctionTask[P]: ...
@overload
def task(
    type: str, fn: Callable[P, None], /, *args: P.args, **kwargs: P.kwargs
) -> FunctionTask[P]: ...
def task(type: str, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> FunctionTask[P]:
    """Wrap ``fn(*args, **kwargs)`` as a task of the given type.

    Args:
        type: low-cardinality name for logs and metrics, e.g. ``"mailer.recovery"``.
        fn: an async function (awaited) or a sync one (run in a worker thread).

    Example::

        await apitask.run(apitask.task("audit.write", write_audit, user_id, "login"))
    """
    return FunctionTask(type, fn, *args, **kwargs)

"""What the ASGI and the WSGI ``TaskMiddleware`` share: the wrapped app and the checked options."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from ._options import WaitMode, check_sink, check_timeout, check_wait

if TYPE_CHECKING:
    from ._types import TaskSink

__all__ = ["ScopeMiddleware"]

AppT = TypeVar("AppT")


class ScopeMiddleware(Generic[AppT]):
    """Base of both middlewares: ``(app, **options)``, each option checked when it is built."""

    def __init__(
        self,
        app: AppT,
        *,
        wait: WaitMode = "before_response",
        sink: TaskSink | None = None,
        timeout: float | None = None,
    ) -> None:
        self.app = app
        self.wait: WaitMode = check_wait(wait)
        self.sink = check_sink(sink)
        self.timeout = check_timeout(timeout)

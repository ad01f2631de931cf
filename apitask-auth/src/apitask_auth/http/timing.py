"""Answer every request that could have sent mail at one deadline: no account enumeration by time.

``/recover`` and ``/resend`` answer ``200 {}``, ``/signup`` a user, and
``/otp`` and ``/magiclink`` ``200 {}`` whether the address has an account
or not; but the paths behind those answers do different work (a real
address writes a token and hands a mail over; an unknown one reads a row, or
for ``/otp`` and ``/magiclink`` signs the address up, which hashes a
password). Whichever is slower would show in the time of the answer.

So no answer of such a request goes out before a deadline common to all of
them: ``start + D``, where ``D`` is, for the request's path, the largest of
the floor and a high quantile (p99) of the recent work times of each
outcome seen on that path. A request's work time is measured from its start
to the start of its response (so a task scope's wait for deliveries counts),
and it joins its outcome's window only after its own deadline was fixed, at
its start. Known and unknown addresses arriving at the same moment therefore
wait until the same ``D``; the estimate moves with the load, but at any
moment it is one value for both. Only a request whose work overruns ``D``
answers later, when done, which by construction of a p99 is rare, and rare
for each outcome alike (each has its own window, so a rare slow outcome such
as a sign-up cannot be outvoted by many fast ones).

The wait is an absolute one on the event loop's clock (``loop.call_at``):
every waiting answer wakes on the same clock however busy the loop is, and
what follows the wait (sending the prepared response) is the same for every
path.

Handlers say which outcome a request was with :func:`mark_sent`,
:func:`mark_nothing_sent` or :func:`mark_outcome`. Unmarked requests (errors,
other endpoints) neither wait nor teach.
"""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastapi import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "NOTHING_SENT",
    "SENT",
    "Deadlines",
    "ResponseTimeMiddleware",
    "mark_nothing_sent",
    "mark_outcome",
    "mark_sent",
    "sleep_until",
]

_KEY = "apitask_auth.mail_outcome"
SENT = "sent"
"""Outcome: a mail went out (the path an existing address takes)."""
NOTHING_SENT = "nothing sent"
"""Outcome: nothing to send where there could have been (an unknown address)."""


@dataclass(slots=True)
class _Outcome:
    label: str | None = None


def mark_outcome(request: Request, outcome: str) -> None:
    """Say which of its path's outcomes this request took (a later mark replaces an earlier one).

    Each outcome of a path has a window of its own, so give outcomes whose
    work differs (a mail, a sign-up) different names.
    """
    state = request.scope.get(_KEY)
    if isinstance(state, _Outcome):
        state.label = outcome


def mark_sent(request: Request) -> None:
    """This request sent mail."""
    mark_outcome(request, SENT)


def mark_nothing_sent(request: Request) -> None:
    """This request sent nothing where it could have."""
    mark_outcome(request, NOTHING_SENT)


class _Window:
    """The last ``size`` values, also kept in order for the quantile."""

    def __init__(self, size: int) -> None:
        self.recent: deque[float] = deque()
        self.ordered: list[float] = []
        self.size = size

    def add(self, value: float) -> None:
        if len(self.recent) == self.size:
            del self.ordered[bisect_left(self.ordered, self.recent.popleft())]
        self.recent.append(value)
        insort(self.ordered, value)

    def quantile(self, q: float) -> float:
        """The nearest-rank ``q`` quantile: the smallest value with at least ``q`` of them <= it."""
        rank = max(1, math.ceil(q * len(self.ordered)))
        return self.ordered[rank - 1]


class Deadlines:
    """How long each path's answers wait, learned from their work times.

    Args:
        floor: the least wait, in seconds (``GOTRUE_SECURITY_RESPONSE_TIME_FLOOR``).
        quantile: of each outcome's recent work times, the one to wait for.
        window: how many recent work times per path and outcome to keep.
    """

    def __init__(self, *, floor: float, quantile: float = 0.99, window: int = 256) -> None:
        if not 0 < quantile <= 1:
            raise ValueError("quantile must be in (0, 1]")
        if window < 1:
            raise ValueError("window must be at least 1")
        self.floor = floor
        self.q = quantile
        self.window = window
        self.paths: dict[str, dict[str, _Window]] = {}

    def wait(self, path: str) -> float:
        """Seconds after its start that a request on ``path`` starting now may answer."""
        outcomes = self.paths.get(path, {})
        return max([self.floor, *(w.quantile(self.q) for w in outcomes.values())])

    def learn(self, path: str, outcome: str, work: float) -> None:
        """A request on ``path`` took ``outcome`` and worked ``work`` seconds."""
        outcomes = self.paths.setdefault(path, {})
        outcomes.setdefault(outcome, _Window(self.window)).add(work)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def sleep_until(deadline: float) -> None:
    """Return at ``deadline`` on the running loop's clock (at once if it has passed)."""
    loop = asyncio.get_running_loop()
    if deadline <= loop.time():
        return
    future = loop.create_future()
    handle = loop.call_at(deadline, _wake, future)
    try:
        await future
    finally:
        handle.cancel()


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class ResponseTimeMiddleware:
    """Hold every marked answer until its path's common deadline (see the module's docstring).

    Args:
        app: the application.
        enabled: off, it passes everything through (``GOTRUE_SECURITY_MATCH_RESPONSE_TIMES``).
        floor: the least wait in seconds (``GOTRUE_SECURITY_RESPONSE_TIME_FLOOR``).
        deadlines: the estimate (made from ``floor`` if not given).
        clock, sleep_until: the loop's time and an absolute wait on it (replaced in tests).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        enabled: bool = True,
        floor: float = 0.0,
        deadlines: Deadlines | None = None,
        clock: Callable[[], float] = _loop_time,
        sleep_until: Callable[[float], Awaitable[None]] = sleep_until,
    ) -> None:
        self.app = app
        self.enabled = enabled
        self.deadlines = deadlines or Deadlines(floor=floor)
        self.clock = clock
        self.sleep_until = sleep_until

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        state = _Outcome()
        scope[_KEY] = state
        path: str = scope["path"]
        started = self.clock()
        # Fixed now, before this request's own work time can join the estimate.
        deadline = started + self.deadlines.wait(path)

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start" and state.label is not None:
                self.deadlines.learn(path, state.label, self.clock() - started)
                await self.sleep_until(deadline)
            await send(message)

        await self.app(scope, receive, timed_send)

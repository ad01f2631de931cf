"""Answer "nothing to send" as late as "sent": no account enumeration by response time.

``/recover`` and ``/resend`` answer ``200 {}``, and ``/signup`` a user,
whether or not a mail went out; but a request that sends mail does more work
(database writes, rendering, and in ``inline``/``request`` modes the delivery
itself), so its answer comes later.
This middleware learns, per path, how long the answers that sent mail took
(the most recent ones), and holds each "nothing sent" answer until a duration
drawn from them has passed. It measures up to the start of the response, so
everything inside it counts, including a task scope's wait for deliveries.

Handlers say which case a request was with :func:`mark_sent` and
:func:`mark_nothing_sent`. A process that has answered no "sent" request on a
path yet has nothing to imitate and adds no delay.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastapi import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ResponseTimeMiddleware", "mark_nothing_sent", "mark_sent"]

_KEY = "apitask_auth.mail_outcome"


@dataclass(slots=True)
class _Outcome:
    sent: bool | None = None


def _mark(request: Request, sent: bool) -> None:
    outcome = request.scope.get(_KEY)
    if isinstance(outcome, _Outcome):
        outcome.sent = sent


def mark_sent(request: Request) -> None:
    """This request sent mail: its response time is a sample to imitate."""
    _mark(request, True)


def mark_nothing_sent(request: Request) -> None:
    """This request sent nothing where it could have: answer it as late as one that did."""
    _mark(request, False)


class ResponseTimeMiddleware:
    """Delay "nothing sent" answers to a recent "sent" answer's time on the same path.

    Args:
        app: the application.
        enabled: off, it passes everything through (``GOTRUE_SECURITY_MATCH_RESPONSE_TIMES``).
        window: how many recent "sent" durations per path to draw from.
        clock, sleep, choose: time, waiting and the draw (replaced in tests).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        enabled: bool = True,
        window: int = 256,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        choose: Callable[[deque[float]], float] = random.choice,
    ) -> None:
        self.app = app
        self.enabled = enabled
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self.choose = choose
        self.samples: dict[str, deque[float]] = {}
        # How late sleeps wake up, on average: aimed for, so delays do not overshoot.
        self.lateness = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        outcome = _Outcome()
        scope[_KEY] = outcome
        started = self.clock()
        path: str = scope["path"]

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start" and outcome.sent is not None:
                elapsed = self.clock() - started
                samples = self.samples.setdefault(path, deque(maxlen=self.window))
                if outcome.sent:
                    samples.append(elapsed)
                elif samples:
                    target = self.choose(samples)
                    if target - self.lateness > elapsed:
                        await self.sleep(target - self.lateness - elapsed)
                        late = self.clock() - started - (target - self.lateness)
                        self.lateness += (late - self.lateness) / 8
            await send(message)

        await self.app(scope, receive, timed_send)

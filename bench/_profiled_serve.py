"""``apitask-auth serve`` with timers on the steps of ``POST /signup`` (run as a process).

``python bench/_profiled_serve.py OUT [serve arguments]`` wraps, before the
app is built, the functions the sign-up endpoint calls (bcrypt, the user
look-up, the inserts, the allowance, the token, the mail hand-off, the audit
entry, the response body), the database's commit, every SQL statement,
the JSON rendering, the router (inside every middleware: the whole request
less the router is the middleware stack's own time) and the response-time
matching's wait for its deadline, then runs ``apitask-auth serve``. Only time spent for a
``POST /signup`` request counts (a context variable set around the request:
it follows the request into SQLAlchemy's greenlets and bcrypt's thread), so
the outbox worker's own statements are left out. At exit it writes
``{step: [total seconds, calls]}`` as JSON to OUT.

Steps nest (``create user`` contains two ``statement`` entries and the read
back; ``statements`` sums every statement wherever it ran), so the report
subtracts what it shows separately; see ``bench/scale.py``.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import json
import signal
import sys
import time
import types
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.default import DefaultDialect
from starlette.routing import Router

import apitask_auth.accounts.flows as flows
import apitask_auth.accounts.users as users_module
import apitask_auth.http.timing as timing
import apitask_auth.routes.auth as auth_api
from apitask_auth import cli

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Receive, Scope, Send

    from apitask_auth.config import Settings

HEADER = "x-bench-profile"
"""Only sign-ups with this header are timed (the warm-up's are not)."""
IN_SIGNUP: contextvars.ContextVar[bool] = contextvars.ContextVar("in_signup", default=False)
TOTALS: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0])


def _add(step: str, seconds: float) -> None:
    total = TOTALS[step]
    total[0] += seconds
    total[1] += 1


def _wrap_async(module: object, name: str, step: str) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        if not IN_SIGNUP.get():
            return await original(*args, **kwargs)
        start = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            _add(step, time.perf_counter() - start)

    setattr(module, name, timed)


def _wrap_sync(owner: object, name: str, step: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if not IN_SIGNUP.get():
            return original(*args, **kwargs)
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _add(step, time.perf_counter() - start)

    setattr(owner, name, timed)


class SignupTimer:
    """Marks ``POST /signup`` requests with :data:`HEADER` (the context variable);
    times them whole."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        timed = (
            scope["type"] == "http"
            and scope["path"] == "/signup"
            and scope["method"] == "POST"
            and any(name == HEADER.encode() for name, _ in scope["headers"])
        )
        if not timed:
            await self.app(scope, receive, send)
            return
        token = IN_SIGNUP.set(True)
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            _add("server: whole request (ASGI app)", time.perf_counter() - start)
            IN_SIGNUP.reset(token)


_STARTS: contextvars.ContextVar[float] = contextvars.ContextVar("statement_start", default=0.0)


def _time_matching_wait() -> None:
    """Time the response-time matching's wait for its deadline (its ``sleep_until``,
    bound when the middleware is built, so wrapped per instance)."""
    original_init = timing.ResponseTimeMiddleware.__init__

    def init(self: timing.ResponseTimeMiddleware, app: ASGIApp, **kwargs: Any) -> None:
        original_init(self, app, **kwargs)
        holder = types.SimpleNamespace(sleep_until=self.sleep_until)
        _wrap_async(holder, "sleep_until", "response-time matching: wait for the deadline")
        self.sleep_until = holder.sleep_until

    setattr(timing.ResponseTimeMiddleware, "__init__", init)  # noqa: B010


def _install() -> None:
    # The endpoint's own names (it imported them from their modules).
    _wrap_async(auth_api, "hash_password", "bcrypt hash (thread)")
    _wrap_async(auth_api, "find_user_by_email", "look up the address")
    # ``create_email_user`` since the sign-up path stopped calling ``create_user`` itself.
    _wrap_async(auth_api, "create_email_user", "create user (insert user + identity, read back)")
    _wrap_async(auth_api, "send_token_mail", "token mail (allowance + token + hand-off)")
    _wrap_async(auth_api, "audit", "audit entry")
    _wrap_async(auth_api, "user_body", "response body (identities read)")
    # Inside send_token_mail.
    _wrap_async(flows, "before_send", "  e-mail allowance")
    _wrap_async(flows, "set_one_time_token", "  one-time token (row + user)")
    _wrap_async(flows, "deliver", "  mail hand-off (outbox insert)")
    # Inside create_user.
    _wrap_async(users_module, "create_email_identity", "  identity insert")
    _wrap_sync(DefaultDialect, "do_commit", "commit")
    _wrap_sync(JSONResponse, "render", "JSON rendering")
    # Inside every middleware: routing, validation and the endpoint (the rest of the
    # whole request is the middleware stack's own time).
    _wrap_async(Router, "__call__", "router (routing, validation, endpoint)")
    _time_matching_wait()

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(*_args: object) -> None:
        _STARTS.set(time.perf_counter())

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(*_args: object) -> None:
        if IN_SIGNUP.get():
            _add("statements (all, wherever they ran)", time.perf_counter() - _STARTS.get())

    build: Callable[[Settings], ASGIApp] = getattr(cli, "create_app")  # noqa: B009

    def create_app(settings: Settings) -> ASGIApp:
        return SignupTimer(build(settings))

    setattr(cli, "create_app", create_app)  # noqa: B010


def main() -> int:
    out = Path(sys.argv[1])
    _install()

    def write(*_args: object) -> None:
        out.write_text(json.dumps(TOTALS))

    # uvicorn re-raises the SIGTERM it stopped on once it has shut down: this handler
    # (restored by then) writes the totals instead of the process dying unwritten.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    atexit.register(write)
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

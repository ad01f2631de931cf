"""An operations page for the outbox, a pool and mail delivery: mount it in any ASGI app.

::

    from apitask import dashboard

    app.mount("/admin/apitask", dashboard.app(outbox=outbox, pool=pool, auth=admin_only))

Server-rendered HTML (Jinja2, autoescaped) that reads with JavaScript off and
refreshes itself with it on. Nobody gets in unless ``auth`` names them (or
``allow_anonymous=True`` says so). Actions (retry, cancel, purge, showing a
payload) are POST forms carrying a CSRF token, confirmed, and logged on the
``apitask.dashboard`` logger with the identity ``auth`` returned.

Needs the ``dashboard`` extra (Starlette and Jinja2). See docs/dashboard.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from ..outbox import OutboxError
from ._app import STATIC, BadInput, Dashboard, logger
from ._security import CSRF_COOKIE, CSRF_FIELD, Csrf

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from .._histogram import Histogram
    from .._pool import WorkerPool
    from ..outbox import Outbox
    from ._security import Auth

    Page = Callable[[Request, Any], Awaitable[Response]]
    Action = Callable[[Request, Any, dict[str, list[str]]], Awaitable[Response]]

__all__ = ["app"]

_MAX_FORM = 16 * 1024
_ASSET_HEADERS = {"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"}


def app(
    outbox: Outbox,
    pool: WorkerPool | None = None,
    *,
    auth: Auth | None = None,
    allow_anonymous: bool = False,
    read_only: bool = False,
    smtp_latency: Histogram | Callable[[], Histogram | None] | None = None,
    csrf_key: bytes | None = None,
    refresh: float = 5.0,
    lease: float | None = None,
    count_cap: int = 10_000,
) -> Starlette:
    """The dashboard as an ASGI app, to mount under a path of yours.

    Args:
        outbox: the outbox to show (its store: SQLite or PostgreSQL).
        pool: an in-memory :class:`~apitask.WorkerPool` whose gauges to show.
        auth: ``request -> identity or None`` (sync or async): who the
            request's user is, or ``None`` to refuse them (403). The identity
            is what the action log names.
        allow_anonymous: with no ``auth``, let everyone in (as
            ``"anonymous"``). Without either, every request is refused.
        read_only: show, but refuse every action (and never show a payload).
        smtp_latency: a histogram to draw, e.g.
            ``smtp_client.counters.send_latency``, or a function returning
            it (or ``None``) when the client is made later than the app.
        csrf_key: the key signing form tokens; the same on every process
            serving the dashboard (random per process by default).
        refresh: read the database's counts at most this often (seconds),
            however many pages are open; each read is a point of the chart.
        lease: the workers' lease length (``Worker(lease=...)``), if they all
            share one: each worker's last heartbeat is then shown (its
            latest lease's end minus the lease length).
        count_cap: count the jobs of each state up to this many: each count
            reads at most that many index entries. A state with more is shown
            as "10,000+", or on PostgreSQL as the planner's estimate "≈ N"
            (docs/dashboard.md).

    Raises:
        ValueError: both ``auth`` and ``allow_anonymous`` were given.
    """
    if auth is not None and allow_anonymous:
        raise ValueError("allow_anonymous: give it or auth, not both")
    if csrf_key is not None and len(csrf_key) < 16:
        raise ValueError("csrf_key: at least 16 bytes")
    if not refresh >= 0:
        raise ValueError(f"refresh: expected seconds >= 0, got {refresh!r}")
    if lease is not None and not lease > 0:
        raise ValueError(f"lease: expected seconds > 0, got {lease!r}")
    if count_cap < 1:
        raise ValueError(f"count_cap: expected a count >= 1, got {count_cap!r}")
    board = Dashboard(
        outbox=outbox,
        pool=pool,
        auth=auth,
        allow_anonymous=allow_anonymous,
        read_only=read_only,
        smtp_latency=smtp_latency,
        csrf=Csrf(csrf_key),
        refresh=refresh,
        lease=lease,
        count_cap=count_cap,
    )
    files = {
        "dashboard.js": (STATIC["dashboard.js"], "text/javascript"),
        "dashboard.css": (STATIC["dashboard.css"], "text/css"),
    }

    def refused(request: Request, status: int, message: str, identity: Any = None) -> Response:
        return board.render(request, "error.html", status, identity=identity, message=message)

    def unavailable(request: Request, exc: OutboxError, identity: Any) -> Response:
        logger.error("dashboard: the outbox's database failed: %s", exc)
        # The driver's message stays in the log: it may name hosts and tables.
        message = "The outbox's database did not answer; see the server's log."
        return refused(request, 503, message, identity)

    def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            identity = await board.who(request)
            if identity is None:
                return refused(request, 403, "You are not allowed to see this page.")
            try:
                return await handler(request, identity)
            except BadInput as exc:
                return refused(request, 400, str(exc), identity)
            except OutboxError as exc:
                return unavailable(request, exc, identity)

        return endpoint

    def action(
        handler: Action, *, confirm: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            identity = await board.who(request)
            if identity is None:
                return refused(request, 403, "You are not allowed to do this.")
            if board.read_only:
                return refused(request, 403, "This dashboard is read-only.", identity)
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > _MAX_FORM:
                    return refused(request, 413, "The form is too large.", identity)
            form = parse_qs(body.decode("utf-8", "replace"))
            token = form.get(CSRF_FIELD, [None])[-1]
            if not board.csrf.check(request.cookies.get(CSRF_COOKIE), token):
                return refused(
                    request, 403, "The form has expired: reload the page and try again.", identity
                )
            if confirm and form.get("confirm") != ["yes"]:
                return refused(request, 400, "confirm: tick the box to confirm.", identity)
            try:
                return await handler(request, identity, form)
            except BadInput as exc:
                return refused(request, 400, str(exc), identity)
            except OutboxError as exc:
                return unavailable(request, exc, identity)

        return endpoint

    def asset(name: str) -> Route:
        content, media_type = files[name]

        async def serve(request: Request) -> Response:
            return Response(content, media_type=media_type, headers=_ASSET_HEADERS)

        return Route(f"/static/{name}", serve)

    return Starlette(
        routes=[
            Route("/", page(board.index), name="index"),
            Route("/api/summary", page(board.api_summary), name="summary"),
            Route("/jobs/{job_id}", page(board.job_page), name="job"),
            Route("/jobs/{job_id}/retry", action(board.retry_one), methods=["POST"]),
            Route("/jobs/{job_id}/cancel", action(board.cancel_one), methods=["POST"]),
            Route("/jobs/{job_id}/reveal", action(board.reveal, confirm=False), methods=["POST"]),
            Route("/retry", action(board.retry_matching), methods=["POST"]),
            Route("/purge", action(board.purge), methods=["POST"]),
            *(asset(name) for name in files),
        ]
    )

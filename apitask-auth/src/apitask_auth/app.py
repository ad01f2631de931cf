"""The ASGI application: routes, error format, body limit, lifespan."""

from __future__ import annotations

import contextlib
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI

from apitask_auth import __version__
from apitask_auth.config import Settings, load_settings
from apitask_auth.delivery.mail_chain import MailChain
from apitask_auth.delivery.runtime import DeliveryRuntime
from apitask_auth.delivery.sms import texter_for
from apitask_auth.errors import install_error_handlers
from apitask_auth.http.admin_dashboard import install_dashboard
from apitask_auth.http.cors import install_cors
from apitask_auth.http.db_cleanup import CleanupMiddleware, DatabaseCleanup
from apitask_auth.http.deps import Service
from apitask_auth.http.inputs import reject_unstorable_input
from apitask_auth.http.limits import BodyLimitMiddleware, HeadLimitMiddleware
from apitask_auth.http.ratelimit import dispose_allowance
from apitask_auth.http.timing import ResponseTimeMiddleware
from apitask_auth.routes import api_routes
from apitask_auth.routes.metrics import ServiceMetrics
from apitask_auth.storage.db import create_engine
from apitask_auth.storage.migrations import migrate_all

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from apitask.mail import MailClient
    from apitask_auth.delivery.texter import Texter

__all__ = ["create_app"]

logger = logging.getLogger("apitask_auth")


def create_app(
    settings: Settings | None = None,
    *,
    transport: MailClient | None = None,
    texter: Texter | None = None,
) -> FastAPI:
    """Build the service's ASGI app.

    Args:
        settings: the configuration; read from the environment (dev mode) when None.
        transport: deliver mail through this client instead of the one the
            settings describe (tests pass a recording client).
        texter: send text messages through this texter instead of the one the
            settings describe (tests pass a recording one).
    """
    if settings is None:
        settings = load_settings(dev=True)
    engine = create_engine(settings.database_url)
    # One pool, one outbox, one in-process worker for every kind of message.
    runtime = DeliveryRuntime(settings)
    mailer = MailChain(settings, transport=transport, runtime=runtime)
    # Twilio, the dev inbox (dev mode without a provider) or the refusing texter.
    texts: Texter = texter if texter is not None else texter_for(settings, runtime, mailer.inbox)
    # GOTRUE_DB_CLEANUP_ENABLED: stale rows removed a step after each successful write.
    cleanup = DatabaseCleanup(engine, settings) if settings.db_cleanup_enabled else None
    metrics = ServiceMetrics(mailer, texts, cleanup) if settings.metrics_enabled else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.dev:
            applied = await migrate_all(engine, settings.database_url)
            if applied:
                logger.info("applied migrations %s", applied)
        try:
            await mailer.start()
            # After the chains: their clients exist and their task prefixes
            # are registered before the outbox worker can pick a job.
            await runtime.start()
            if cleanup is not None:
                await cleanup.start()
            async with contextlib.AsyncExitStack() as stack:
                if metrics is not None:
                    await stack.enter_async_context(metrics.running())
                yield
        finally:
            # Drains the in-process outbox worker and the pool first (their
            # tasks still need the clients), then closes the clients (SMTP
            # connections, the texter's), and only then stops the dev inbox.
            if cleanup is not None:
                # Before the engine goes: a running step finishes (or is cancelled).
                await cleanup.aclose()
            await runtime.aclose()
            await texts.aclose()
            await mailer.aclose()
            await dispose_allowance(engine)
            await engine.dispose()

    app = FastAPI(
        title="apitask-auth",
        version=__version__,
        description="A GoTrue-compatible auth API for the e-mail flows.",
        lifespan=lifespan,
        # Before any route's own checks: nothing unstorable reaches a handler.
        dependencies=[Depends(reject_unstorable_input)],
    )
    app.state.service = Service(settings=settings, engine=engine, mailer=mailer, texter=texts)
    app.state.metrics = metrics
    app.state.cleanup = cleanup
    # The e-mail limiter counts its refusals here (http/ratelimit.py).
    app.state.email_refusals = metrics.mail.rate_limited if metrics is not None else None
    install_error_handlers(app)
    app.include_router(api_routes(settings))
    runtime.install(app)
    mailer.install(app)
    # apitask's operations page at /admin/apitask, for admin tokens only.
    install_dashboard(app, settings, runtime, mailer)
    if cleanup is not None:
        # Outside the task scope: a step starts once the request's own tasks are done.
        app.add_middleware(CleanupMiddleware, cleanup=cleanup)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(HeadLimitMiddleware)
    # Outermost but for CORS, so the time it matches includes everything else.
    app.add_middleware(
        ResponseTimeMiddleware,
        enabled=settings.security_match_response_times,
        floor=settings.security_response_time_floor.total_seconds(),
    )
    install_cors(app, settings)
    return app

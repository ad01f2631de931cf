"""The ASGI application: routes, error format, body limit, lifespan."""

from __future__ import annotations

import contextlib
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request

from apitask_auth import __version__
from apitask_auth.config import Settings, load_settings
from apitask_auth.delivery.mail_chain import MailChain
from apitask_auth.errors import install_error_handlers
from apitask_auth.http.cors import install_cors
from apitask_auth.http.deps import Service
from apitask_auth.http.inputs import reject_unstorable_input
from apitask_auth.http.limits import BodyLimitMiddleware, HeadLimitMiddleware
from apitask_auth.http.ratelimit import IPRateLimitMiddleware, dispose_allowance
from apitask_auth.http.timing import ResponseTimeMiddleware
from apitask_auth.routes.admin import router as admin_router
from apitask_auth.routes.auth import router as auth_router
from apitask_auth.routes.dev_landing import router as dev_landing_router
from apitask_auth.routes.disabled import router as disabled_router
from apitask_auth.routes.metrics import ServiceMetrics
from apitask_auth.routes.recovery import router as recovery_router
from apitask_auth.routes.user import router as user_router
from apitask_auth.routes.verify import router as verify_router
from apitask_auth.storage.db import create_engine, migrate_all

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from apitask.mail import MailClient

__all__ = ["create_app"]

logger = logging.getLogger("apitask_auth")

general = APIRouter()

_PROVIDERS = [
    "anonymous_users",
    "apple",
    "azure",
    "bitbucket",
    "discord",
    "facebook",
    "snapchat",
    "figma",
    "fly",
    "github",
    "gitlab",
    "google",
    "keycloak",
    "kakao",
    "linkedin",
    "linkedin_oidc",
    "notion",
    "spotify",
    "slack",
    "slack_oidc",
    "workos",
    "twitch",
    "twitter",
    "email",
    "phone",
    "zoom",
]


@general.get("/health")
async def health() -> dict[str, str]:
    """Liveness, with GoTrue's name and description."""
    return {
        "version": __version__,
        "name": "GoTrue",
        "description": "GoTrue is a user registration and authentication API",
    }


@general.get("/settings")
async def public_settings(request: Request) -> dict[str, Any]:
    """Which sign-in methods are on (GoTrue's /settings)."""
    settings: Settings = request.app.state.service.settings
    external = dict.fromkeys(_PROVIDERS, False)
    external["email"] = settings.external_email_enabled
    return {
        "external": external,
        "disable_signup": settings.disable_signup,
        "mailer_autoconfirm": settings.mailer_autoconfirm,
        "phone_autoconfirm": False,
        "sms_provider": "",
        "saml_enabled": False,
        "saml_private_key_next_configured": False,
        "passkeys_enabled": False,
    }


def create_app(settings: Settings | None = None, *, transport: MailClient | None = None) -> FastAPI:
    """Build the service's ASGI app.

    Args:
        settings: the configuration; read from the environment (dev mode) when None.
        transport: deliver mail through this client instead of the one the
            settings describe (tests pass a recording client).
    """
    if settings is None:
        settings = load_settings(dev=True)
    engine = create_engine(settings.database_url)
    mailer = MailChain(settings, transport=transport)
    metrics = ServiceMetrics(mailer) if settings.metrics_enabled else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.dev:
            applied = await migrate_all(engine, settings.database_url)
            if applied:
                logger.info("applied migrations %s", applied)
        try:
            await mailer.start()
            async with contextlib.AsyncExitStack() as stack:
                if metrics is not None:
                    await stack.enter_async_context(metrics.running())
                yield
        finally:
            # Drains the pool and the in-process outbox worker, closes the
            # SMTP connections, and only then stops the dev inbox.
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
    app.state.service = Service(settings=settings, engine=engine, mailer=mailer)
    app.state.metrics = metrics
    install_error_handlers(app)
    if metrics is not None:
        metrics.install(app)  # after the error handlers: it wraps the APIError one
    app.include_router(general)
    app.include_router(auth_router)
    app.include_router(verify_router)
    app.include_router(admin_router)
    app.include_router(recovery_router)
    app.include_router(user_router)
    app.include_router(disabled_router)
    if settings.dev:
        app.include_router(dev_landing_router)
    mailer.install(app)
    app.add_middleware(IPRateLimitMiddleware, settings=settings)
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

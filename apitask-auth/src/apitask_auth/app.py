"""The ASGI application: routes, error format, body limit, lifespan."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from . import __version__
from .admin_api import router as admin_router
from .auth_api import router as auth_router
from .config import ConfigError, Delivery, Settings, load_settings
from .db import create_engine, migrate
from .deps import Service
from .errors import install_error_handlers
from .limits import BodyLimitMiddleware
from .mailer import RecordingMailer
from .ratelimit import IPRateLimitMiddleware
from .recovery_api import router as recovery_router
from .timing import ResponseTimeMiddleware
from .user_api import router as user_router

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

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
    external["anonymous_users"] = settings.external_anonymous_users_enabled
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


dev_router = APIRouter(prefix="/_dev", include_in_schema=False)


@dev_router.get("/mail")
async def recorded_mail(request: Request) -> JSONResponse:
    """Dev mode: every mail the recording mailer rendered, oldest first."""
    mailer = request.app.state.service.mailer
    return JSONResponse([message.as_json() for message in getattr(mailer, "sent", [])])


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service's ASGI app.

    Args:
        settings: the configuration; read from the environment (dev mode) when None.
    """
    if settings is None:
        settings = load_settings(dev=True)
    if settings.delivery in {Delivery.POOL, Delivery.OUTBOX}:
        # Refuse rather than quietly send inline: the operator asked for mail off the
        # request path and would not get it.
        variable = "GOTRUE_MAILER_DELIVERY" if settings.mailer_delivery else "GOTRUE_WORKER_ENABLED"
        raise ConfigError(
            f"{variable}: delivery mode {settings.delivery.value!r} is not available in this "
            "build yet; use inline or request"
        )
    engine = create_engine(settings.database_url)
    mailer = RecordingMailer(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.dev:
            applied = await migrate(engine)
            if applied:
                logger.info("applied migrations %s", applied)
        try:
            yield
        finally:
            await mailer.aclose()
            await engine.dispose()

    app = FastAPI(
        title="apitask-auth",
        version=__version__,
        description="A GoTrue-compatible auth API for the e-mail flows.",
        lifespan=lifespan,
    )
    app.state.service = Service(settings=settings, engine=engine, mailer=mailer)
    install_error_handlers(app)
    app.include_router(general)
    app.include_router(auth_router)
    app.include_router(admin_router)
    app.include_router(recovery_router)
    app.include_router(user_router)
    if settings.dev:
        app.include_router(dev_router)
    app.add_middleware(IPRateLimitMiddleware, settings=settings)
    app.add_middleware(BodyLimitMiddleware)
    # Outermost, so the time it matches includes everything else.
    app.add_middleware(ResponseTimeMiddleware, enabled=settings.security_match_response_times)
    return app

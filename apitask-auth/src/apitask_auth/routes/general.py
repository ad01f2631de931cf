"""``GET /health``, ``GET /settings`` and the JWKS: what any client may ask first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request  # noqa: TC002 - FastAPI reads the annotation at runtime
from fastapi.responses import JSONResponse

from apitask_auth import __version__

if TYPE_CHECKING:
    from apitask_auth.config import Settings

__all__ = ["health", "jwks", "public_settings"]

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


async def health() -> dict[str, str]:
    """Liveness, with GoTrue's name and description."""
    return {
        "version": __version__,
        "name": "GoTrue",
        "description": "GoTrue is a user registration and authentication API",
    }


async def public_settings(request: Request) -> dict[str, Any]:
    """Which sign-in methods are on (GoTrue's /settings)."""
    settings: Settings = request.app.state.service.settings
    external = dict.fromkeys(_PROVIDERS, False)
    external["email"] = settings.external_email_enabled
    external["anonymous_users"] = settings.external_anonymous_users_enabled
    external["phone"] = settings.external_phone_enabled
    return {
        "external": external,
        "disable_signup": settings.disable_signup,
        "mailer_autoconfirm": settings.mailer_autoconfirm,
        "phone_autoconfirm": settings.sms_autoconfirm,
        # GOTRUE_SMS_PROVIDER as configured, as GoTrue reports it ("" with none,
        # even when dev mode catches texts in the dev inbox).
        "sms_provider": settings.sms_provider,
        "saml_enabled": False,
        "saml_private_key_next_configured": False,
        "passkeys_enabled": False,
    }


async def jwks(request: Request) -> JSONResponse:
    """The public keys that verify access tokens (GoTrue's ``/.well-known/jwks.json``).

    Only asymmetric keys: a symmetric one, or the JWT secret, would let the
    reader sign tokens. Cached for 10 minutes, as GoTrue sends it (clients
    such as supabase-js and supabase-py cache it as long).
    """
    settings: Settings = request.app.state.service.settings
    return JSONResponse(
        settings.jwt_keyset.public_jwks(), headers={"Cache-Control": "public, max-age=600"}
    )

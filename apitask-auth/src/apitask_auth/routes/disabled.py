"""GoTrue's features this service does not implement, answered as GoTrue answers
with each feature off, never a bare route 404.

A client that probes SSO, identity linking, OAuth sign-in or the OAuth
server gets the status, ``error_code`` and message it would get from a GoTrue
deployment with that feature switched off (sources: supabase/auth
``internal/api/api.go`` routes, ``middleware.go`` ``require*Enabled``,
``external.go``, ``token_oidc.go``,
``web3.go``, ``jwks.go``), after the same authentication GoTrue checks first.
The grant types ``id_token`` and ``web3`` are answered from ``POST /token``
through :func:`refuse_grant`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request  # noqa: TC002 - FastAPI reads the annotation at runtime
from fastapi.responses import JSONResponse

from apitask_auth.errors import APIError, ErrorCode, bad_request, not_found, unprocessable

if TYPE_CHECKING:
    from starlette.responses import Response

__all__ = [
    "authorize",
    "callback",
    "identities",
    "jwks",
    "oauth_clients",
    "refuse_grant",
    "sso",
]

# GoTrue's OIDC issuers for the id_token grant's named providers (token_oidc.go).
_ID_TOKEN_ISSUERS = {
    "apple": "https://appleid.apple.com",
    "google": "https://accounts.google.com",
    "facebook": "https://www.facebook.com",
    "kakao": "https://kauth.kakao.com",
    "azure": "",
    "keycloak": "",
}
# The external providers GoTrue knows (GET /settings lists them); all are off here.
_OAUTH_PROVIDERS = frozenset(
    {
        "apple",
        "azure",
        "bitbucket",
        "discord",
        "facebook",
        "figma",
        "fly",
        "github",
        "gitlab",
        "google",
        "kakao",
        "keycloak",
        "linkedin",
        "linkedin_oidc",
        "notion",
        "slack",
        "slack_oidc",
        "snapchat",
        "spotify",
        "twitch",
        "twitter",
        "workos",
        "zoom",
    }
)
_SAML_DISABLED = not_found(ErrorCode.SAML_PROVIDER_DISABLED, "SAML 2.0 is disabled")
_LINKING_DISABLED = not_found(ErrorCode.MANUAL_LINKING_DISABLED, "Manual linking is disabled")
_OAUTH_SERVER_DISABLED = not_found(ErrorCode.FEATURE_DISABLED, "OAuth server is disabled")


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object sent, or {} (these answers never depend on a malformed body)."""
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# -- SSO (SAML) ---------------------------------------------------------------


async def sso() -> Response:
    """SAML single sign-on, off."""
    raise _SAML_DISABLED


# -- identities and external providers ---------------------------------------


async def identities() -> Response:
    """Linking and unlinking identities (GOTRUE_SECURITY_MANUAL_LINKING_ENABLED off)."""
    raise _LINKING_DISABLED


async def authorize(provider: str = "") -> Response:
    """OAuth sign-in with an external provider: every provider is off."""
    name = provider.lower()
    reason = (
        "provider is not enabled"
        if name in _OAUTH_PROVIDERS
        else f"Provider {name} could not be found"
    )
    raise bad_request(ErrorCode.VALIDATION_FAILED, f"Unsupported provider: {reason}")


async def callback(request: Request) -> Response:
    """The OAuth callback: no flow was ever started, so no state is ours."""
    if not request.query_params.get("state"):
        raise bad_request(ErrorCode.BAD_OAUTH_CALLBACK, "OAuth state parameter missing")
    raise bad_request(ErrorCode.BAD_OAUTH_STATE, "OAuth callback with invalid state")


# -- the OAuth 2.1 server, and keys -----------------------------------------------


async def oauth_clients() -> Response:
    """OAuth client management (GOTRUE_OAUTH_SERVER_ENABLED off)."""
    raise _OAUTH_SERVER_DISABLED


async def jwks() -> Response:
    """Tokens are signed with the HS256 secret, which GoTrue never publishes: no keys."""
    return JSONResponse({"keys": []})


# -- POST /token grants ----------------------------------------------------------


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    return value if isinstance(value, str) else ""


def refuse_grant(grant_type: str, sent: object) -> APIError | None:
    """GoTrue's answer to the ``id_token`` or ``web3`` grant (``sent``: the JSON body)
    with no provider on, in the order GoTrue checks; None for any other grant type."""
    body: dict[str, Any] = sent if isinstance(sent, dict) else {}
    if grant_type == "web3":
        return unprocessable(ErrorCode.WEB3_PROVIDER_DISABLED, "Web3 provider is disabled")
    if grant_type != "id_token":
        return None
    provider, issuer = (_text(body, name) for name in ("provider", "issuer"))
    if not _text(body, "id_token"):
        return bad_request(ErrorCode.VALIDATION_FAILED, "id_token required")
    if not provider and not (_text(body, "client_id") and issuer):
        return bad_request(ErrorCode.VALIDATION_FAILED, "provider or client_id and issuer required")
    if provider in _ID_TOKEN_ISSUERS:
        named = _ID_TOKEN_ISSUERS[provider] or issuer
        return bad_request(
            ErrorCode.PROVIDER_DISABLED, f'Provider (issuer "{named}") is not enabled'
        )
    return bad_request(
        ErrorCode.VALIDATION_FAILED, f'Custom OIDC provider "{provider}" not allowed'
    )

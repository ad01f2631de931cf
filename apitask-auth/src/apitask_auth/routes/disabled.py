"""GoTrue's features this service does not implement, answered as GoTrue answers
with each feature off, never a bare route 404.

A client that probes MFA, SSO, identity linking, OAuth sign-in or the OAuth
server gets the status, ``error_code`` and message it would get from a GoTrue
deployment with that feature switched off (sources: supabase/auth
``internal/api/api.go`` routes, ``middleware.go`` ``require*Enabled``,
``mfa.go``, ``admin.go`` ``loadFactor``, ``external.go``, ``token_oidc.go``,
``web3.go``, ``jwks.go``), after the same authentication GoTrue checks first.
The grant types ``id_token`` and ``web3`` are answered from ``POST /token``
through :func:`refuse_grant`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from apitask_auth.errors import APIError, ErrorCode, bad_request, not_found, unprocessable
from apitask_auth.http.deps import Admin, Auth, Svc  # noqa: TC001 - read by FastAPI
from apitask_auth.routes.admin import existing_user

if TYPE_CHECKING:
    from starlette.responses import Response

__all__ = ["refuse_grant", "router"]

router = APIRouter()

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
_ENROLL_DISABLED = {
    "totp": (ErrorCode.MFA_TOTP_ENROLL_NOT_ENABLED, "MFA enroll is disabled for TOTP"),
    "phone": (ErrorCode.MFA_PHONE_ENROLL_NOT_ENABLED, "MFA enroll is disabled for Phone"),
    "webauthn": (ErrorCode.MFA_WEBAUTHN_ENROLL_NOT_ENABLED, "MFA enroll is disabled for WebAuthn"),
}
_SAML_DISABLED = not_found(ErrorCode.SAML_PROVIDER_DISABLED, "SAML 2.0 is disabled")
_LINKING_DISABLED = not_found(ErrorCode.MANUAL_LINKING_DISABLED, "Manual linking is disabled")
_OAUTH_SERVER_DISABLED = not_found(ErrorCode.FEATURE_DISABLED, "OAuth server is disabled")


def _no_factor(factor_id: str) -> APIError:
    """GoTrue's loadFactor: no factor is ever enrolled here."""
    try:
        uuid.UUID(factor_id)
    except ValueError:
        return not_found(ErrorCode.VALIDATION_FAILED, "factor_id must be an UUID")
    return not_found(ErrorCode.MFA_FACTOR_NOT_FOUND, "Factor not found")


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object sent, or {} (these answers never depend on a malformed body)."""
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# -- MFA ----------------------------------------------------------------------


@router.post("/factors", include_in_schema=False)
async def enroll_factor(request: Request, auth: Auth) -> Response:
    """MFA enrolment: every factor type is off."""
    factor_type = (await _body(request)).get("factor_type")
    if isinstance(factor_type, str) and factor_type in _ENROLL_DISABLED:
        code, message = _ENROLL_DISABLED[factor_type]
        raise unprocessable(code, message)
    raise bad_request(
        ErrorCode.VALIDATION_FAILED, "factor_type needs to be totp, phone, or webauthn"
    )


@router.post("/factors/{factor_id}/challenge", include_in_schema=False)
@router.post("/factors/{factor_id}/verify", include_in_schema=False)
@router.delete("/factors/{factor_id}", include_in_schema=False)
async def use_factor(factor_id: str, auth: Auth) -> Response:
    """Challenge, verify or unenrol a factor: there is none."""
    raise _no_factor(factor_id)


@router.get("/admin/users/{user_id}/factors", include_in_schema=False)
async def admin_list_factors(user_id: str, svc: Svc, admin: Admin) -> Response:
    """A user's factors: always none (after GoTrue's user lookup)."""
    await _admin_user(svc, user_id)
    return JSONResponse([])


@router.put("/admin/users/{user_id}/factors/{factor_id}", include_in_schema=False)
@router.delete("/admin/users/{user_id}/factors/{factor_id}", include_in_schema=False)
async def admin_change_factor(user_id: str, factor_id: str, svc: Svc, admin: Admin) -> Response:
    """Update or delete a user's factor: there is none."""
    await _admin_user(svc, user_id)
    raise _no_factor(factor_id)


async def _admin_user(svc: Svc, user_id: str) -> None:
    async with svc.engine.connect() as conn:
        await existing_user(conn, user_id)


# -- SSO (SAML) ---------------------------------------------------------------


@router.post("/sso", include_in_schema=False)
@router.get("/sso/saml/metadata", include_in_schema=False)
@router.post("/sso/saml/acs", include_in_schema=False)
async def sso() -> Response:
    """SAML single sign-on, off."""
    raise _SAML_DISABLED


# -- identities and external providers ---------------------------------------


@router.get("/user/identities/authorize", include_in_schema=False)
@router.delete("/user/identities/{identity_id}", include_in_schema=False)
async def identities(auth: Auth) -> Response:
    """Linking and unlinking identities (GOTRUE_SECURITY_MANUAL_LINKING_ENABLED off)."""
    raise _LINKING_DISABLED


@router.get("/authorize", include_in_schema=False)
async def authorize(provider: str = "") -> Response:
    """OAuth sign-in with an external provider: every provider is off."""
    name = provider.lower()
    reason = (
        "provider is not enabled"
        if name in _OAUTH_PROVIDERS
        else f"Provider {name} could not be found"
    )
    raise bad_request(ErrorCode.VALIDATION_FAILED, f"Unsupported provider: {reason}")


@router.get("/callback", include_in_schema=False)
@router.post("/callback", include_in_schema=False)
async def callback(request: Request) -> Response:
    """The OAuth callback: no flow was ever started, so no state is ours."""
    if not request.query_params.get("state"):
        raise bad_request(ErrorCode.BAD_OAUTH_CALLBACK, "OAuth state parameter missing")
    raise bad_request(ErrorCode.BAD_OAUTH_STATE, "OAuth callback with invalid state")


# -- the OAuth 2.1 server, and keys -----------------------------------------------


@router.api_route("/admin/oauth/clients", methods=["GET", "POST"], include_in_schema=False)
@router.api_route(
    "/admin/oauth/clients/{rest:path}",
    methods=["GET", "POST", "PUT", "DELETE"],
    include_in_schema=False,
)
async def oauth_clients(admin: Admin) -> Response:
    """OAuth client management (GOTRUE_OAUTH_SERVER_ENABLED off)."""
    raise _OAUTH_SERVER_DISABLED


@router.get("/.well-known/jwks.json", include_in_schema=False)
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

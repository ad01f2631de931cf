"""The HTTP endpoints, one module per area of GoTrue's API, and the route table.

* :mod:`.general`: ``/health``, ``/settings``.
* :mod:`.auth`: ``/signup``, ``/token``, ``GET /user``, ``/logout``.
* :mod:`.recovery`: the mail-only ways in: ``/recover``, ``/magiclink``, ``/otp``, ``/resend``.
* :mod:`.verify`: ``/verify``, the link clicked and the code typed.
* :mod:`.user`: ``PUT /user`` and ``/reauthenticate``.
* :mod:`.admin`: ``/invite``, ``/admin/generate_link``, ``/admin/users``.
* :mod:`.mfa`: ``/factors`` and the admin's ``/admin/users/{id}/factors``.
* :mod:`.disabled`: GoTrue's answers for the features this service does not have.
* :mod:`.metrics`: ``/metrics``; :mod:`.dev_landing`: dev mode's landing page.

Handlers parse and check the request, then call :mod:`apitask_auth.accounts`
(the rules) and :mod:`apitask_auth.delivery` (the mail); they hold no SQL of
their own beyond the transaction they open. Which path reaches which handler,
behind which per-IP limit and which auth, is said once: in :func:`api_routes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from apitask_auth.accounts.bodies import (
    GenerateLinkBody,
    SessionBody,
    SingleConfirmationBody,
    UserBody,
    UserListBody,
)
from apitask_auth.http.deps import require_admin_credentials, require_authentication
from apitask_auth.http.ratelimit import RequestLimits
from apitask_auth.routes import (
    admin,
    auth,
    dev_landing,
    disabled,
    general,
    metrics,
    mfa,
    recovery,
    user,
    verify,
)

if TYPE_CHECKING:
    from apitask_auth.config import Settings

__all__ = ["api_routes"]


def api_routes(settings: Settings) -> APIRouter:
    """Every route of the service with its per-IP limit and its auth, as GoTrue's
    ``internal/api/api.go`` lists them.

    A route's checks run in the order named, the limit first, then the
    caller; the body's fields are checked after them. ``otp``,
    ``verify_limit`` and ``token_limit`` are GoTrue's limiters
    (docs/gotrue.md §1.7); each is one bucket, shared by every route that
    names it. ``/signup`` draws on ``otp``, or on ``anonymous``
    (``GOTRUE_RATE_LIMIT_ANONYMOUS_USERS``) for an anonymous sign-up.
    In front of them all: FastAPI's parse of a JSON body and the
    app's refusal of text it could not store (:mod:`apitask_auth.http.inputs`).
    """
    per_ip = RequestLimits(settings)
    otp = per_ip.limit(settings.rate_limit_otp)
    verify_limit = per_ip.limit(settings.rate_limit_verify)
    token_limit = per_ip.limit(settings.rate_limit_token_refresh)
    signed_in = require_authentication

    api = APIRouter()
    api.get("/health")(general.health)
    api.get("/settings")(general.public_settings)
    api.get("/.well-known/jwks.json")(general.jwks)
    anonymous = per_ip.limit_per_hour(settings.rate_limit_anonymous_users)
    signup_limit = auth.signup_limit(settings, otp, anonymous)
    api.post("/signup", dependencies=[signup_limit], response_model=SessionBody | UserBody)(
        auth.signup
    )
    api.post("/token", dependencies=[token_limit], response_model=SessionBody)(auth.token)
    api.get("/verify", dependencies=[verify_limit], status_code=303)(verify.verify_link)
    api.post(
        "/verify",
        dependencies=[verify_limit],
        response_model=SessionBody | SingleConfirmationBody,
    )(verify.verify_otp)
    api.post("/recover", dependencies=[otp])(recovery.recover)
    api.post("/resend", dependencies=[otp])(recovery.resend)
    api.post("/magiclink", dependencies=[otp], openapi_extra=recovery.MAGICLINK_OPENAPI)(
        recovery.magiclink
    )
    api.post("/otp", dependencies=[otp])(recovery.otp)
    api.post("/logout", dependencies=[signed_in], status_code=204)(auth.logout)
    api.get("/reauthenticate", dependencies=[signed_in])(user.reauthenticate)
    api.get("/user", dependencies=[signed_in], response_model=UserBody)(auth.get_current_user)
    api.put("/user", dependencies=[otp, signed_in], response_model=UserBody)(
        user.update_current_user
    )

    # GoTrue's requireAdminCredentials, once for every admin route.
    admins = APIRouter(dependencies=[require_admin_credentials])
    admins.post("/invite", response_model=UserBody)(admin.invite)
    admins.post("/admin/generate_link", response_model=GenerateLinkBody)(admin.generate_link)
    admins.get("/admin/users", response_model=UserListBody)(admin.list_users)
    admins.post("/admin/users", response_model=UserBody)(admin.create_admin_user)
    admins.get("/admin/users/{user_id}", response_model=UserBody)(admin.get_admin_user)
    admins.put("/admin/users/{user_id}", response_model=UserBody)(admin.update_admin_user)
    admins.delete("/admin/users/{user_id}")(admin.delete_admin_user)
    admins.get("/admin/users/{user_id}/factors")(mfa.admin_list_factors)
    admins.put("/admin/users/{user_id}/factors/{factor_id}")(mfa.admin_update_factor)
    admins.delete("/admin/users/{user_id}/factors/{factor_id}")(mfa.admin_delete_factor)

    # MFA: GoTrue's requireNotAnonymous, and one per-IP limit each for challenge and verify.
    factors = [signed_in, mfa.not_anonymous]
    mfa_verify = per_ip.limit_per_minute(settings.mfa_rate_limit_challenge_and_verify)
    mfa_challenge = per_ip.limit_per_minute(settings.mfa_rate_limit_challenge_and_verify)
    api.post("/factors", dependencies=factors)(mfa.enroll)
    api.post("/factors/{factor_id}/challenge", dependencies=[*factors, mfa_challenge])(
        mfa.challenge
    )
    api.post(
        "/factors/{factor_id}/verify",
        dependencies=[*factors, mfa_verify],
        response_model=SessionBody,
    )(mfa.verify)
    api.delete("/factors/{factor_id}", dependencies=factors)(mfa.unenroll)

    # The features that are off, answered as GoTrue answers them; not in /openapi.json.
    off = APIRouter(include_in_schema=False)
    off.get("/user/identities/authorize", dependencies=[signed_in])(disabled.identities)
    off.delete("/user/identities/{identity_id}", dependencies=[signed_in])(disabled.identities)
    off.post("/sso")(disabled.sso)
    off.get("/sso/saml/metadata")(disabled.sso)
    off.post("/sso/saml/acs")(disabled.sso)
    off.get("/authorize")(disabled.authorize)
    off.api_route("/callback", methods=["GET", "POST"])(disabled.callback)
    off.get("/.well-known/jwks.json")(disabled.jwks)
    admins_off = APIRouter(include_in_schema=False)
    admins_off.api_route("/admin/oauth/clients", methods=["GET", "POST"])(disabled.oauth_clients)
    admins_off.api_route(
        "/admin/oauth/clients/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"]
    )(disabled.oauth_clients)
    admins.include_router(admins_off)

    api.include_router(admins)
    api.include_router(off)
    if settings.metrics_enabled:
        api.get("/metrics", include_in_schema=False)(metrics.scrape)
    if settings.dev:  # the dev inbox's own pages come with the mailer (delivery/)
        api.get(dev_landing.LANDING_PATH, include_in_schema=False)(dev_landing.landing)
    return api

"""apitask's operations page, mounted at ``/admin/apitask`` for the service's admins.

The same credential as the admin API: a JWT whose role is one of
``GOTRUE_JWT_ADMIN_ROLES`` (``service_role``), sent as ``Authorization:
Bearer`` or, for a browser, in the ``apitask_admin`` cookie that
``POST /admin/apitask-session`` sets from a pasted token (HttpOnly,
SameSite=Strict, only sent to the dashboard's path). Anything else gets the
dashboard's 403 page. Mounted only when the service has an outbox (delivery
mode ``pool`` or ``outbox``).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.responses import HTMLResponse, RedirectResponse, Response

from apitask import dashboard
from apitask.mail import SMTPClient
from apitask_auth.errors import APIError
from apitask_auth.http.deps import admin_claims

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request

    from apitask._histogram import Histogram
    from apitask_auth.config import Settings
    from apitask_auth.delivery.mail_chain import MailChain
    from apitask_auth.delivery.runtime import DeliveryRuntime

__all__ = ["DASHBOARD_PATH", "install_dashboard"]

DASHBOARD_PATH = "/admin/apitask"
SESSION_PATH = "/admin/apitask-session"
COOKIE = "apitask_admin"

_LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>apitask dashboard: sign in</title></head>
<body><form method="post" action="/admin/apitask-session">
<label>Admin JWT (service_role) <input name="token" type="password" autocomplete="off"
 required></label> <button type="submit">Open the dashboard</button></form></body></html>"""


def _identity(settings: Settings, token: str | None) -> str | None:
    """``role:sub`` of an admin token (the admin API's check), or None (refused)."""
    if not token:
        return None
    try:
        claims = admin_claims(settings, token)
    except APIError:
        return None
    return f"{claims['role']}:{claims.get('sub') or '-'}"


def _token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(COOKIE)


def install_dashboard(
    app: FastAPI, settings: Settings, runtime: DeliveryRuntime, mailer: MailChain
) -> None:
    """Mount the dashboard on ``app`` (when there is an outbox) and its sign-in form."""
    if runtime.outbox is None:
        return

    def auth(request: Request) -> str | None:
        return _identity(settings, _token(request))

    def latency() -> Histogram | None:
        # The transport exists once the chain starts; /metrics takes the same one.
        transport = mailer.transport
        return transport.counters.send_latency if isinstance(transport, SMTPClient) else None

    # Form tokens signed with a key derived from the JWT secret: every process
    # of the service accepts the forms any of them served.
    key = (
        hmac.new(settings.jwt_secret.encode(), b"apitask-dashboard-csrf", hashlib.sha256).digest()
        if settings.jwt_secret
        else None
    )
    app.mount(
        DASHBOARD_PATH,
        dashboard.app(
            runtime.outbox,
            runtime.pool,
            auth=auth,
            smtp_latency=latency,
            csrf_key=key,
            lease=settings.outbox_worker_lease.total_seconds(),
        ),
    )

    async def sign_in_form(request: Request) -> Response:
        return HTMLResponse(_LOGIN, headers={"Cache-Control": "no-store"})

    async def sign_in(request: Request) -> Response:
        body = await request.body()
        token = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[-1].strip()
        if _identity(settings, token) is None:
            return HTMLResponse("Not an admin token.", status_code=403)
        response = RedirectResponse(f"{DASHBOARD_PATH}/", status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            path=DASHBOARD_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    app.add_route(SESSION_PATH, sign_in_form, methods=["GET"], include_in_schema=False)
    app.add_route(SESSION_PATH, sign_in, methods=["POST"], include_in_schema=False)

"""CORS as GoTrue's rs/cors answers it: preflights, marked responses, extra headers.

The browser's own view (a page on another origin calling the API) is
tests/acceptance/test_browser_cors.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service

APP = "http://app.example.com:5173"
# What supabase-js sends with every call.
SUPABASE_JS = "apikey, authorization, content-type, x-client-info, x-supabase-api-version"


def _preflight(method: str, headers: str) -> dict[str, str]:
    return {
        "Origin": APP,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_a_supabase_js_preflight_is_allowed(svc: Service) -> None:
    """It was a 405 with no CORS header: no browser app on another origin could call."""
    for method, path in (("POST", "/token"), ("PUT", "/user"), ("DELETE", "/admin/users/x")):
        response = await svc.http.options(path, headers=_preflight(method, SUPABASE_JS))
        assert response.status_code == 200
        # Credentials allowed, so the origin is echoed (never "*"), as rs/cors does.
        assert response.headers["access-control-allow-origin"] == APP
        assert response.headers["access-control-allow-credentials"] == "true"
        assert method in response.headers["access-control-allow-methods"].split(", ")
        allowed = {h.lower() for h in response.headers["access-control-allow-headers"].split(", ")}
        assert set(SUPABASE_JS.split(", ")) <= allowed
        assert {"x-client-ip", "x-jwt-aud", "x-use-cookie", "accept"} <= allowed
        assert response.headers["access-control-max-age"] == "600"
        assert "Origin" in response.headers["vary"]


async def test_responses_to_other_origins_carry_gotrue_s_cors_headers(svc: Service) -> None:
    """Every answer, errors included, names the origin and exposes GoTrue's headers
    (the admin list's X-Total-Count and Link, the API version)."""
    for response in (
        await svc.http.get("/health", headers={"Origin": APP}),
        await svc.http.get("/user", headers={"Origin": APP}),  # 401
        await svc.http.get("/no-such-path", headers={"Origin": APP}),  # 404
    ):
        assert response.headers["access-control-allow-origin"] == APP
        assert response.headers["access-control-allow-credentials"] == "true"
        assert response.headers["access-control-expose-headers"] == (
            "X-Total-Count, Link, X-Supabase-Api-Version"
        )
    same_origin = await svc.http.get("/health")
    assert "access-control-allow-origin" not in same_origin.headers


async def test_a_header_not_allowed_or_a_method_not_allowed_is_refused(svc: Service) -> None:
    """Neither is listed as allowed, so a browser does not send the request (rs/cors
    answers 204 without CORS headers; Starlette says 400 and why: same outcome)."""
    refused = await svc.http.options("/signup", headers=_preflight("POST", "x-secret-sauce"))
    assert (refused.status_code, refused.text) == (400, "Disallowed CORS headers")
    assert "x-secret-sauce" not in refused.headers["access-control-allow-headers"].lower()
    refused = await svc.http.options("/signup", headers=_preflight("PATCH", "content-type"))
    assert (refused.status_code, refused.text) == (400, "Disallowed CORS method")
    assert "PATCH" not in refused.headers["access-control-allow-methods"]


async def test_gotrue_cors_allowed_headers_adds_request_headers(
    make_service: Callable[..., Any],
) -> None:
    """GOTRUE_CORS_ALLOWED_HEADERS: extra headers a browser app may send."""
    svc: Service = await make_service(cors_allowed_headers=["X-Tenant", "x-trace-id"])
    response = await svc.http.options("/signup", headers=_preflight("POST", "x-tenant, x-trace-id"))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP

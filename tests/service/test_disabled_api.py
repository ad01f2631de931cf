"""Features not implemented answer as GoTrue with each one off (issue #14), never a
bare route 404: every route of disabled_api.py, over HTTP, on both databases.

The real supabase client's view is tests/acceptance/test_supabase_client_disabled.py.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from ._accounts import signed_in

if TYPE_CHECKING:
    from .conftest import Service


def _error(response: Any) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error_code"], body["msg"]


async def test_sso_and_saml_are_off(svc: Service) -> None:
    for method, path in (
        ("POST", "/sso"),
        ("GET", "/sso/saml/metadata"),
        ("POST", "/sso/saml/acs"),
    ):
        response = await svc.http.request(method, path)
        assert _error(response) == (404, "saml_provider_disabled", "SAML 2.0 is disabled")


async def test_identity_linking_is_off(svc: Service) -> None:
    _, session = await signed_in(svc)
    auth = {"Authorization": f"Bearer {session['access_token']}"}
    for method, path in (
        ("GET", "/user/identities/authorize?provider=github"),
        ("DELETE", f"/user/identities/{uuid.uuid4()}"),
    ):
        response = await svc.http.request(method, path, headers=auth)
        assert _error(response) == (404, "manual_linking_disabled", "Manual linking is disabled")
    assert (await svc.http.get("/user/identities/authorize")).status_code == 401


async def test_external_providers_are_off(svc: Service) -> None:
    response = await svc.http.get("/authorize", params={"provider": "github"})
    assert _error(response) == (
        400,
        "validation_failed",
        "Unsupported provider: provider is not enabled",
    )
    response = await svc.http.get("/authorize", params={"provider": "myspace"})
    assert _error(response) == (
        400,
        "validation_failed",
        "Unsupported provider: Provider myspace could not be found",
    )
    response = await svc.http.get("/callback")
    assert _error(response) == (400, "bad_oauth_callback", "OAuth state parameter missing")
    response = await svc.http.post("/callback", params={"state": "x", "code": "y"})
    assert _error(response) == (400, "bad_oauth_state", "OAuth callback with invalid state")


async def test_the_oauth_server_is_off(svc: Service) -> None:
    admin = svc.admin_headers()
    for method, path in (
        ("GET", "/admin/oauth/clients"),
        ("POST", "/admin/oauth/clients"),
        ("GET", f"/admin/oauth/clients/{uuid.uuid4()}"),
        ("DELETE", f"/admin/oauth/clients/{uuid.uuid4()}"),
        ("POST", f"/admin/oauth/clients/{uuid.uuid4()}/regenerate_secret"),
    ):
        response = await svc.http.request(method, path, headers=admin)
        assert _error(response) == (404, "feature_disabled", "OAuth server is disabled")
    assert (await svc.http.get("/admin/oauth/clients")).status_code == 401


async def test_jwks_lists_no_keys(svc: Service) -> None:
    """HS256 secrets are never published, as in GoTrue's jwks.go: an empty key set."""
    response = await svc.http.get("/.well-known/jwks.json")
    assert (response.status_code, response.json()) == (200, {"keys": []})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, (400, "validation_failed", "id_token required")),
        (
            {"id_token": "a.b.c"},
            (400, "validation_failed", "provider or client_id and issuer required"),
        ),
        (
            {"id_token": "a.b.c", "provider": "google"},
            (
                400,
                "provider_disabled",
                'Provider (issuer "https://accounts.google.com") is not enabled',
            ),
        ),
        (
            {"id_token": "a.b.c", "provider": ["google"], "client_id": "c", "issuer": "https://x"},
            (400, "validation_failed", 'Custom OIDC provider "" not allowed'),
        ),
        (
            {"id_token": "a.b.c", "provider": "myidp"},
            (400, "validation_failed", 'Custom OIDC provider "myidp" not allowed'),
        ),
    ],
)
async def test_the_id_token_grant_has_no_provider(
    svc: Service, body: dict[str, Any], expected: tuple[int, str, str]
) -> None:
    response = await svc.http.post("/token", params={"grant_type": "id_token"}, json=body)
    assert _error(response) == expected


async def test_the_web3_grant_is_off_and_others_unsupported(svc: Service) -> None:
    response = await svc.http.post("/token", params={"grant_type": "web3"}, json={})
    assert _error(response) == (422, "web3_provider_disabled", "Web3 provider is disabled")
    response = await svc.http.post("/token", params={"grant_type": "magic"}, json={})
    assert _error(response) == (400, "invalid_credentials", "unsupported_grant_type")


async def test_phone_fields_answer_phone_off(svc: Service) -> None:
    phone = "+15555550100"
    for path, body, expected in (
        ("/signup", {"phone": phone, "password": "secret-pw"}, "Phone signups are disabled"),
        ("/otp", {"phone": phone}, "Unsupported phone provider"),
        (
            "/token?grant_type=password",
            {"phone": phone, "password": "x"},
            "Phone logins are disabled",
        ),
    ):
        response = await svc.http.post(path, json=body)
        assert _error(response) == (400, "phone_provider_disabled", expected)
    _, session = await signed_in(svc)
    auth = {"Authorization": f"Bearer {session['access_token']}"}
    response = await svc.http.put("/user", json={"phone": phone}, headers=auth)
    assert _error(response) == (400, "phone_provider_disabled", "Phone logins are disabled")

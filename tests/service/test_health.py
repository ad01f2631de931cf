"""GET /health, GET /settings and the OpenAPI document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apitask_auth import __version__

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service


async def test_health_answers_like_gotrue(svc: Service) -> None:
    """Name and description are GoTrue's own strings; version is ours."""
    response = await svc.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "version": __version__,
        "name": "GoTrue",
        "description": "GoTrue is a user registration and authentication API",
    }


async def test_settings_reflect_configuration(make_service: Callable[..., Any]) -> None:
    """GET /settings lists every provider GoTrue lists, and the e-mail switches."""
    svc: Service = await make_service(mailer_autoconfirm=True, disable_signup=True)
    body = (await svc.http.get("/settings")).json()
    assert body["external"]["email"] is True
    assert body["external"]["github"] is False
    assert len(body["external"]) == 26
    assert body["mailer_autoconfirm"] is True
    assert body["disable_signup"] is True
    assert body["sms_provider"] == ""


async def test_openapi_documents_the_endpoints(svc: Service) -> None:
    """/openapi.json lists the GoTrue paths this service implements; no dev paths."""
    paths = (await svc.http.get("/openapi.json")).json()["paths"]
    for path in ("/signup", "/verify", "/token", "/user", "/logout", "/invite"):
        assert path in paths
    assert "/admin/users/{user_id}" in paths
    assert not any(path.startswith("/_dev") for path in paths)


def _bodies(schema: dict[str, Any], components: dict[str, Any]) -> set[str]:
    """The component schemas a response may be: its ``$ref``s, through ``anyOf``, and
    through the object a list of users comes in."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        if name == "UserListBody":
            return {name} | _bodies(components[name]["properties"]["users"]["items"], components)
        return {name}
    return {name for choice in schema.get("anyOf", []) for name in _bodies(choice, components)}


async def test_openapi_documents_the_user_and_session_bodies(svc: Service) -> None:
    """The 200 answers of the endpoints that return a user or a session name their
    schemas; optional user fields are not required, and never null."""
    document = (await svc.http.get("/openapi.json")).json()
    components = document["components"]["schemas"]
    expected = {
        ("post", "/signup"): {"SessionBody", "UserBody"},
        ("post", "/token"): {"SessionBody"},
        ("get", "/user"): {"UserBody"},
        ("put", "/user"): {"UserBody"},
        ("post", "/verify"): {"SessionBody", "SingleConfirmationBody"},
        ("get", "/admin/users"): {"UserListBody", "UserBody"},
        ("post", "/admin/users"): {"UserBody"},
        ("get", "/admin/users/{user_id}"): {"UserBody"},
    }
    for (method, path), names in expected.items():
        answer = document["paths"][path][method]["responses"]["200"]
        assert _bodies(answer["content"]["application/json"]["schema"], components) == names
    user = components["UserBody"]
    assert set(user["required"]) == {
        "id",
        "aud",
        "role",
        "email",
        "phone",
        "app_metadata",
        "user_metadata",
        "identities",
        "created_at",
        "updated_at",
        "is_anonymous",
    }
    assert user["properties"]["email_confirmed_at"] == {
        "type": "string",
        "format": "date-time",
        "title": "Email Confirmed At",
    }
    assert user["properties"]["identities"]["items"] == {
        "$ref": "#/components/schemas/IdentityBody"
    }
    assert components["SessionBody"]["properties"]["user"] == {
        "$ref": "#/components/schemas/UserBody"
    }
    assert set(components["SessionBody"]["required"]) == {
        "access_token",
        "token_type",
        "expires_in",
        "expires_at",
        "refresh_token",
        "user",
    }


async def test_dev_inbox_exists_only_in_dev_mode(make_service: Callable[..., Any]) -> None:
    """Dev mode without an SMTP host: mail reaches the embedded inbox over SMTP and is
    readable at /_dev/inbox; outside dev mode those paths are a GoTrue-style 404."""
    svc: Service = await make_service(record=False)
    for path in ("/_dev/inbox", "/_dev/inbox/messages"):
        missing = await svc.http.get(path)
        assert (missing.status_code, missing.json()["error_code"]) == (404, "not_found")
    dev: Service = await make_service(record=False, dev=True)
    await dev.http.post("/signup", json={"email": "d@example.com", "password": "secret-pw"})
    caught = (
        await dev.http.get("/_dev/inbox/messages", params={"to": "d@example.com", "wait": 10})
    ).json()
    assert [message["to"] for message in caught] == [["d@example.com"]]
    assert caught[0]["subject"] == "Confirm your email address"
    assert any("/verify?token=" in link for link in caught[0]["links"])
    page = await dev.http.get("/_dev/inbox")
    assert page.status_code == 200
    assert "d@example.com" in page.text


async def test_dev_mode_lands_a_person_on_a_page(make_service: Callable[..., Any]) -> None:
    """The site URL in dev mode is the API's root: there, a page (its one inline script
    allowed by hash); outside dev mode GoTrue's JSON 404."""
    svc: Service = await make_service()
    missing = await svc.http.get("/")
    assert (missing.status_code, missing.json()["error_code"]) == (404, "not_found")
    dev: Service = await make_service(dev=True)
    page = await dev.http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert '<a href="/_dev/inbox">' in page.text

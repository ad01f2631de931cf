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


async def test_dev_paths_exist_only_in_dev_mode(make_service: Callable[..., Any]) -> None:
    """/_dev/mail answers in dev mode and is a GoTrue-style 404 otherwise."""
    svc: Service = await make_service()
    missing = await svc.http.get("/_dev/mail")
    assert (missing.status_code, missing.json()["error_code"]) == (404, "not_found")
    dev: Service = await make_service(dev=True)
    await dev.http.post("/signup", json={"email": "d@example.com", "password": "secret-pw"})
    mail = (await dev.http.get("/_dev/mail")).json()
    assert [message["to"] for message in mail] == ["d@example.com"]

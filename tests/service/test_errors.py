"""Error format by X-Supabase-Api-Version, bad bodies, the 1 MiB limit (§1.2, §1.5, §1.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .conftest import NEW_FORMAT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .conftest import Service


async def test_legacy_format_without_or_before_the_version(svc: Service) -> None:
    """No header, an old date, or garbage: {code: status, error_code, msg}, no echo."""
    for headers in ({}, {"X-Supabase-Api-Version": "2023-12-31"}, {"X-Supabase-Api-Version": "x"}):
        response = await svc.http.post("/signup", json={"email": "a@b.co"}, headers=headers)
        assert response.json() == {
            "code": 400,
            "error_code": "validation_failed",
            "msg": "Signup requires a valid password",
        }
        assert response.headers["x-sb-error-code"] == "validation_failed"
        assert "x-supabase-api-version" not in response.headers


async def test_new_format_from_2024_01_01(svc: Service) -> None:
    """From 2024-01-01: {code: error_code, message} and the version echoed."""
    response = await svc.http.post("/signup", json={"email": "a@b.co"}, headers=NEW_FORMAT)
    assert response.json() == {
        "code": "validation_failed",
        "message": "Signup requires a valid password",
    }
    assert response.headers["x-supabase-api-version"] == "2024-01-01"


@pytest.mark.parametrize(
    "content",
    [b"{", b"[]", b"null", b'"text"', b'{"email": 5}', b'{"data": "not an object"}', b""],
)
async def test_malformed_or_mistyped_json_is_bad_json(svc: Service, content: bytes) -> None:
    """Unparseable bodies and wrong types are 400 bad_json, never 422 or 500."""
    response = await svc.http.post(
        "/signup", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "bad_json"
    assert response.json()["msg"].startswith("Could not parse request body as JSON")


async def test_unknown_fields_are_ignored(svc: Service) -> None:
    """Extra fields change nothing, as with Go's decoder."""
    response = await svc.http.post(
        "/signup", json={"email": "x@example.com", "password": "secret-password", "extra": [1]}
    )
    assert response.status_code == 200


async def test_body_over_one_mebibyte_by_content_length(svc: Service) -> None:
    """A declared length over 1 MiB is refused with 413 before reading."""
    response = await svc.http.post(
        "/signup",
        content=b"x" * ((1 << 20) + 1),
        headers={"Content-Type": "application/json"} | NEW_FORMAT,
    )
    assert response.status_code == 413
    assert response.json()["code"] == "request_entity_too_large"


async def test_streamed_body_over_one_mebibyte(svc: Service) -> None:
    """A chunked body that grows past 1 MiB is refused with 413 while reading."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(17):
            yield b" " * 65536

    response = await svc.http.post(
        "/signup", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error_code"] == "request_entity_too_large"


async def test_body_just_under_the_limit_is_read(svc: Service) -> None:
    """A body of exactly 1 MiB is parsed normally."""
    body = b'{"email": "a@b.co"}'
    body += b" " * ((1 << 20) - len(body))
    response = await svc.http.post(
        "/signup", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.json()["msg"] == "Signup requires a valid password"


async def test_unknown_path_and_method(svc: Service) -> None:
    """Unknown paths and methods answer in GoTrue's format too."""
    missing = await svc.http.get("/nope")
    assert (missing.status_code, missing.json()["error_code"]) == (404, "not_found")
    wrong = await svc.http.delete("/signup")
    assert (wrong.status_code, wrong.json()["error_code"]) == (405, "method_not_allowed")


async def test_unexpected_errors_are_gotrue_500s(
    svc: Service, caplog: pytest.LogCaptureFixture
) -> None:
    """Anything unhandled is 500 unexpected_failure with an error_id (legacy format),
    logged with its traceback; the error goes no further than the app (a server
    would close the connection on it)."""

    @svc.app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    import httpx

    # raise_app_exceptions (the default): an error leaving the app fails the call.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=svc.app), base_url="http://auth.test"
    ) as client:
        response = await client.get("/boom", headers={"x-request-id": "req-1"})
    assert "unhandled error on GET /boom" in caplog.text
    assert "RuntimeError: kaboom" in caplog.text
    assert response.status_code == 500
    assert response.json() == {
        "code": 500,
        "error_code": "unexpected_failure",
        "msg": "Unexpected failure, please check server logs for more information",
        "error_id": "req-1",
    }

"""Refresh tokens as GoTrue answers them: reuse with rotation on and off, the reuse
interval, concurrent refreshes, and malformed tokens (internal/tokens/service.go)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from apitask_auth.storage.tables import refresh_tokens

from ._accounts import bearer, signed_in
from .conftest import NEW_FORMAT

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from .conftest import Service


async def _refresh(svc: Service, token: str) -> httpx.Response:
    return await svc.http.post("/token?grant_type=refresh_token", json={"refresh_token": token})


async def _chain(svc: Service) -> tuple[dict[str, Any], list[str]]:
    """Sign in and refresh twice: the newest session and the tokens, oldest first."""
    _, session = await signed_in(svc)
    tokens = [session["refresh_token"]]
    for _ in range(2):
        response = await _refresh(svc, tokens[-1])
        assert response.status_code == 200, response.text
        session = response.json()
        tokens.append(session["refresh_token"])
    return session, tokens


async def _token_count(svc: Service) -> int:
    async with svc.app.state.service.engine.connect() as conn:
        count: int = (
            await conn.execute(select(func.count()).select_from(refresh_tokens))
        ).scalar_one()
    return count


async def test_rotation_off_refuses_a_reused_token_and_keeps_the_session(
    make_service: Callable[..., Any],
) -> None:
    """Rotation off: a grandparent token is refused every time and mints nothing;
    the session and its active token live on (GoTrue fails only the request)."""
    svc: Service = await make_service(security_refresh_token_rotation_enabled=False)
    session, (grandparent, parent, active) = await _chain(svc)
    minted = await _token_count(svc)
    for _ in range(3):
        reused = await _refresh(svc, grandparent)
        assert reused.status_code == 400
        assert reused.json()["error_code"] == "refresh_token_already_used"
        assert reused.json()["msg"] == "Invalid Refresh Token: Already Used"
    assert await _token_count(svc) == minted
    # The parent of the active token is the lost-response case: the active token again.
    again = await _refresh(svc, parent)
    assert again.json()["refresh_token"] == active
    assert (await svc.http.get("/user", headers=bearer(session))).status_code == 200
    assert (await _refresh(svc, active)).status_code == 200


async def test_rotation_on_reuse_ends_the_session(make_service: Callable[..., Any]) -> None:
    """Rotation on (the default): the same reuse ends the whole session."""
    svc: Service = await make_service()
    session, (grandparent, _, active) = await _chain(svc)
    reused = await _refresh(svc, grandparent)
    assert reused.json()["error_code"] == "refresh_token_already_used"
    assert (await _refresh(svc, active)).json()["error_code"] == "refresh_token_not_found"
    assert (await svc.http.get("/user", headers=bearer(session))).status_code == 403


@pytest.mark.parametrize("rotation", [True, False])
async def test_reuse_interval_swaps_a_revoked_token(
    make_service: Callable[..., Any], rotation: bool
) -> None:
    """Within the reuse interval a revoked token is swapped for a new one, as GoTrue does."""
    svc: Service = await make_service(
        security_refresh_token_rotation_enabled=rotation,
        security_refresh_token_reuse_interval=3600,
    )
    _, (grandparent, _, active) = await _chain(svc)
    swapped = await _refresh(svc, grandparent)
    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["refresh_token"] not in {grandparent, active}
    assert (await _refresh(svc, active)).status_code == 200


async def test_concurrent_refreshes_of_one_token_get_one_child(svc: Service) -> None:
    """Two tabs refreshing the same token at once both get the same new token."""
    _, session = await signed_in(svc)
    first, second = await asyncio.gather(
        _refresh(svc, session["refresh_token"]), _refresh(svc, session["refresh_token"])
    )
    assert first.status_code == second.status_code == 200
    assert first.json()["refresh_token"] == second.json()["refresh_token"]


@pytest.mark.parametrize(
    "token", ["x", "NOT-VALID", "abcdefghijk", "abcdefghijklm", "ABCDEFGHIJKL", "abcdefghijk\n"]
)
async def test_malformed_refresh_token_is_not_found(svc: Service, token: str) -> None:
    """Any string we could not have issued is an unknown token (GoTrue's answer), in
    both error formats, without a lookup. (A NUL never gets this far: every request
    field with one is refused at the door, test_input.py.)"""
    legacy = await _refresh(svc, token)
    assert legacy.status_code == 400
    assert legacy.json() == {
        "code": 400,
        "error_code": "refresh_token_not_found",
        "msg": "Invalid Refresh Token: Refresh Token Not Found",
    }
    new = await svc.http.post(
        "/token?grant_type=refresh_token", json={"refresh_token": token}, headers=NEW_FORMAT
    )
    assert new.json() == {
        "code": "refresh_token_not_found",
        "message": "Invalid Refresh Token: Refresh Token Not Found",
    }


@pytest.mark.parametrize("body", [{}, {"refresh_token": ""}, {"refresh_token": None}])
async def test_empty_refresh_token_is_an_oauth_error(svc: Service, body: dict[str, Any]) -> None:
    """GoTrue answers a missing token with its OAuth-style invalid_request."""
    response = await svc.http.post("/token?grant_type=refresh_token", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "refresh_token required",
    }

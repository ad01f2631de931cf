"""GET /health answers like GoTrue's."""

from __future__ import annotations

import httpx

from apitask_auth import __version__
from apitask_auth.app import create_app


async def test_health_answers_like_gotrue() -> None:
    """Name and description are GoTrue's own strings; version is ours."""
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "version": __version__,
        "name": "GoTrue",
        "description": "GoTrue is a user registration and authentication API",
    }

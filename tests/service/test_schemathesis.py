"""Property-based requests from /openapi.json: no 5xx, no response off its schema.

Schemathesis generates valid and invalid bodies, query strings and paths for
every operation and sends them through the ASGI app (with an admin token, so
admin operations get past authentication). Bounded per operation to stay fast.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from apitask_auth.app import create_app
from apitask_auth.config import load_settings
from apitask_auth.storage.migrations import migrate

from .conftest import SECRET

if TYPE_CHECKING:
    from collections.abc import Iterator


# The schema is read from the app at import (pytest parametrizes from it), so
# the app and its SQLite file exist from then; the fixture migrates and cleans up.
_DIRECTORY = Path(tempfile.mkdtemp(prefix="apitask-auth-schemathesis-"))
APP = create_app(
    load_settings(
        env_file=None,
        site_url="http://localhost:3000",
        api_external_url="http://auth.test",
        jwt_secret=SECRET,
        database_url=f"sqlite:///{_DIRECTORY / 'auth.db'}",
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
ADMIN = {"Authorization": "Bearer " + jwt.encode({"role": "service_role"}, SECRET, "HS256")}


@pytest.fixture(scope="module", autouse=True)
def _database() -> Iterator[None]:
    engine = APP.state.service.engine

    async def prepare() -> None:
        await migrate(engine)
        await engine.dispose()  # the test client's loop opens its own connections

    asyncio.run(prepare())
    yield
    asyncio.run(engine.dispose())
    shutil.rmtree(_DIRECTORY, ignore_errors=True)


# The test client runs the app on a loop in a portal thread and waits on it.
@pytest.mark.no_blockbuster
@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_errors(case: schemathesis.Case[Any]) -> None:
    """Every generated request gets a non-5xx answer that matches the schema."""
    case.call_and_validate(headers=ADMIN, checks=[not_a_server_error, response_schema_conformance])


@pytest.fixture(scope="module")
def user_headers() -> dict[str, str]:
    """A signed-in user's bearer token, for the routes that need a session (/factors)."""
    import httpx

    body = {"email": "fuzz@example.com", "password": "fuzz-password-1", "email_confirm": True}

    async def sign_in() -> str:
        transport = httpx.ASGITransport(app=APP)
        async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as http:
            created = await http.post("/admin/users", json=body, headers=ADMIN)
            assert created.status_code == 200, created.text
            signed_in = await http.post("/token?grant_type=password", json=body)
            assert signed_in.status_code == 200, signed_in.text
        await APP.state.service.engine.dispose()  # the test client's loop opens its own
        token: str = signed_in.json()["access_token"]
        return token

    return {"Authorization": f"Bearer {asyncio.run(sign_in())}"}


@pytest.mark.no_blockbuster
@schema.include(path_regex="^/factors").parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_factor_routes_as_a_user(
    case: schemathesis.Case[Any], user_headers: dict[str, str]
) -> None:
    """MFA's routes, as a signed-in user (the admin token has no session): no 5xx."""
    case.call_and_validate(
        headers=user_headers, checks=[not_a_server_error, response_schema_conformance]
    )

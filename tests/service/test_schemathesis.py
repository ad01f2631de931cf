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

"""Fixtures shared by every test.

* Every async test runs on an asyncio loop in debug mode (``asyncio_debug``
  in pyproject.toml): slow callbacks and never-awaited coroutines show.
* blockbuster fails any blocking call (sync file, socket, sleep, sqlite3...)
  made on the event loop thread, so "never on the loop" is proven, not hoped.
* ``postgres_url`` gives the test PostgreSQL server, or skips with the reason;
  with APITASK_REQUIRE_POSTGRES=1 (set by .ci/run) an absent server fails.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

if TYPE_CHECKING:
    from collections.abc import Iterator

POSTGRES_URL = os.environ.get(
    "APITASK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def blockbuster(request: pytest.FixtureRequest) -> Iterator[BlockBuster | None]:
    """Raise on blocking calls made from the event loop thread."""
    if request.node.get_closest_marker("no_blockbuster"):
        yield None
        return
    with blockbuster_ctx() as bb:
        # Test-side tooling that legitimately touches files while a loop runs.
        for func in ("os.stat", "io.TextIOWrapper.read", "io.BufferedReader.read"):
            bb.functions[func].can_block_in("_pytest/", "pytest")
        # asyncpg looks for ~/.pgpass and ~/.postgresql/* (a few stats) while it
        # parses connect arguments, on the loop, on every connect: a driver
        # detail we cannot move off the loop, so exactly that is allowed.
        for function in bb.functions.values():
            function.can_block_in("asyncpg/connect_utils.py", "_parse_connect_dsn_and_args")
        yield bb


def _postgres_reachable(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 5432), timeout=2).close()
    except OSError as exc:
        return f"PostgreSQL not reachable at {parts.hostname}:{parts.port or 5432} ({exc})"
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the test PostgreSQL database (skips locally when absent, fails in CI)."""
    problem = _postgres_reachable(POSTGRES_URL)
    if problem is not None:
        if os.environ.get("APITASK_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{problem}; CI requires it (APITASK_REQUIRE_POSTGRES=1)")
        pytest.skip(f"{problem}; set APITASK_TEST_POSTGRES_URL to run these tests")
    return POSTGRES_URL

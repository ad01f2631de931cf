"""A PostgreSQL server refusing new connections for being full (SQLSTATE 53300).

A burst of sign-ups grows the pools; a server at ``max_connections`` refused
the new connection, and the sign-up answered 500 ``unexpected_failure``
(seen in bench/scale.py's 16 concurrent clients, the server log saying "sorry,
too many clients already"). The service now waits for a slot (pg_connect.py).

The server is made "full" for our role only: a role of our own with
``CONNECTION LIMIT 0`` is refused exactly as a full server refuses (the
superuser the other tests use is exempt from such limits, and filling the
shared server's ``max_connections`` would fail other runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from apitask_auth.storage import pg_connect

from .conftest import _admin_sql, email

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .conftest import Service

pytestmark = pytest.mark.postgres


@pytest.fixture
def role() -> str:
    """The name of the role the service connects as (a fresh one per test)."""
    return f"apitask_full_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def database_url(postgres_url: str, role: str) -> Iterator[str]:
    """A database of our own, owned by and reached as a non-superuser ``role``."""
    name = f"apitask_auth_full_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin_sql(postgres_url, f'CREATE ROLE "{role}" LOGIN'))
    try:
        asyncio.run(_admin_sql(postgres_url, f'CREATE DATABASE "{name}" OWNER "{role}"'))
        parts = urlsplit(postgres_url)
        host = parts.netloc.rpartition("@")[2]
        try:
            yield urlunsplit(parts._replace(netloc=f"{role}@{host}", path=f"/{name}"))
        finally:
            asyncio.run(_admin_sql(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        asyncio.run(_admin_sql(postgres_url, f'DROP ROLE IF EXISTS "{role}"'))


class _Refusals(logging.Handler):
    """Sets ``seen`` when the service logs that PostgreSQL refused a connection."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "refused a new connection" in record.getMessage():
            self.seen.set()


@contextlib.contextmanager
def _watching() -> Iterator[_Refusals]:
    handler = _Refusals()
    logger = logging.getLogger("apitask_auth")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def _limit(postgres_url: str, role: str, limit: int) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT {limit}')
    finally:
        await conn.close()


@pytest.mark.parametrize("pool", ["service", "allowance"])
async def test_signup_waits_for_a_full_server_instead_of_a_500(
    make_service: Callable[..., Any], postgres_url: str, role: str, pool: str
) -> None:
    """A sign-up that needs a new connection while the server refuses them gets one
    as soon as the server takes connections again, and answers 200, not 500.

    ``service``: the engine's pool has no idle connection (as when a burst needs its
    overflow). ``allowance``: the engine's pool has one (set up by the fixture); the
    e-mail allowance's own pool, not used yet, has none.
    """
    svc: Service = await make_service(rate_limit_email_sent="1000")
    if pool == "service":
        await svc.app.state.service.engine.dispose()
    await _limit(postgres_url, role, 0)
    address = email()
    with _watching() as refusals:
        signup = asyncio.ensure_future(
            svc.http.post("/signup", json={"email": address, "password": "secret-password"})
        )
        refused = asyncio.ensure_future(refusals.seen.wait())
        await asyncio.wait({signup, refused}, return_when=asyncio.FIRST_COMPLETED)
        # A slot frees (the server has room again): the waiting sign-up takes it.
        await _limit(postgres_url, role, -1)
        response = await signup
        refused.cancel()
    assert response.status_code == 200, response.text
    assert refusals.seen.is_set()
    assert [mail.to for mail in svc.sent] == [address]


async def test_a_server_still_full_after_the_wait_fails_the_connection(
    database_url: str, postgres_url: str, role: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The wait is bounded: past it the refusal is raised (the request's 500, logged),
    after one warning, however many times the server refused meanwhile."""
    await _limit(postgres_url, role, 0)
    with pytest.raises(asyncpg.TooManyConnectionsError):
        await pg_connect.connect(database_url, wait=0.3)
    refusals = [r for r in caplog.records if "refused a new connection" in r.getMessage()]
    assert [r.levelname for r in refusals] == ["WARNING"]

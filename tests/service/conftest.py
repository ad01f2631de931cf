"""The service in-process, over httpx.ASGITransport, on SQLite and on PostgreSQL.

SQLite: a fresh file per test. PostgreSQL: one database per test session with
a random name, created here and dropped afterwards (others share the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from apitask.mail import RecordingClient
from apitask_auth.app import create_app
from apitask_auth.config import Delivery, Settings, load_settings
from apitask_auth.storage.migrations import migrate, migrate_all
from apitask_auth.storage.tables import email_rate_limits

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from fastapi import FastAPI

    from apitask.mail import MailClient, Message
    from apitask_auth.delivery.texter import Texter

SECRET = "service-test-secret-at-least-32-bytes"
NEW_FORMAT = {"X-Supabase-Api-Version": "2024-01-01"}


async def _admin_sql(url: str, statement: str) -> None:
    engine = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1), isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A database of our own on the shared server, dropped at the end of the session."""
    name = f"apitask_auth_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_sql(postgres_url, f'CREATE DATABASE "{name}"'))
    parts = urlsplit(postgres_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        asyncio.run(_admin_sql(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each service test runs on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'auth.db'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


@dataclass
class Service:
    """The app under test (its lifespan running), an HTTP client for it, and its mail."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    mail: RecordingClient

    @property
    def sent(self) -> list[Message]:
        """Every mail delivered so far, oldest first."""
        return self.mail.messages

    def otp(self, address: str) -> str:
        """The code in the newest mail to ``address``."""
        text = [mail for mail in self.sent if mail.to == address][-1].text
        # "Or enter this code: 123456", or the re-authentication mail's "...: 123456"
        found = re.search(r": (\d{6,10})\s*$", text, re.MULTILINE)
        assert found is not None, text
        return found.group(1)

    def link(self, address: str) -> str:
        """The action link in the newest mail to ``address``."""
        text = [mail for mail in self.sent if mail.to == address][-1].text
        found = re.search(r": (https?://\S+)", text)
        assert found is not None, text
        return found.group(1)

    def admin_headers(self, role: str = "service_role") -> dict[str, str]:
        token = jwt.encode({"role": role}, SECRET, algorithm="HS256")
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def make_service(database_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Build services with extra settings, their lifespans running; all are shut
    down at the end of the test. Mail is recorded unless ``record=False`` (then
    the settings choose the transport: the dev inbox in dev mode), or sent
    through ``transport``; texts go to ``texter`` (none configured: refused)."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            *,
            record: bool = True,
            transport: MailClient | None = None,
            texter: Texter | None = None,
            **overrides: Any,
        ) -> Service:
            settings = load_settings(
                env_file=None,
                site_url="http://localhost:3000",
                api_external_url="http://auth.test",
                jwt_secret=SECRET,
                database_url=database_url,
                **overrides,
            )
            mail = transport if isinstance(transport, RecordingClient) else RecordingClient()
            if transport is None and record:
                transport = mail
            # Building the engine touches the file system (SQLite paths): off the loop.
            app = await asyncio.to_thread(create_app, settings, transport=transport, texter=texter)
            if settings.delivery in {Delivery.POOL, Delivery.OUTBOX}:
                await migrate_all(app.state.service.engine, database_url)
            else:  # no outbox: spare the shared PostgreSQL server the outbox's connections
                await migrate(app.state.service.engine)
            # The e-mail allowance lives in the database, which PostgreSQL tests share:
            # each service starts with a full one.
            async with app.state.service.engine.begin() as connection:
                await connection.execute(email_rate_limits.delete())
            await stack.enter_async_context(app.router.lifespan_context(app))
            http = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://auth.test"
            )
            stack.push_async_callback(http.aclose)
            return Service(app, http, settings, mail)

        yield make


@pytest.fixture
async def svc(make_service: Callable[..., Any]) -> Service:
    """A service with the default settings (autoconfirm off)."""
    service: Service = await make_service()
    return service


def email() -> str:
    """A fresh address."""
    return f"u{uuid.uuid4().hex[:12]}@example.com"

"""The service in-process, over httpx.ASGITransport, on SQLite and on PostgreSQL.

SQLite: a fresh file per test. PostgreSQL: one database per test session with
a random name, created here and dropped afterwards (others share the server).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from apitask_auth.app import create_app
from apitask_auth.config import Settings, load_settings
from apitask_auth.db import email_rate_limits, migrate

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from fastapi import FastAPI

    from apitask_auth.mailer import RecordingMailer

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
    """The app under test, an HTTP client for it, and its mail."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings

    @property
    def mailer(self) -> RecordingMailer:
        mailer: RecordingMailer = self.app.state.service.mailer
        return mailer

    def otp(self, address: str) -> str:
        """The code in the newest mail to ``address``."""
        text = [mail for mail in self.mailer.sent if mail.to == address][-1].text
        return text.rsplit("enter the code: ", 1)[1].strip()

    def link(self, address: str) -> str:
        """The action link in the newest mail to ``address``."""
        text = [mail for mail in self.mailer.sent if mail.to == address][-1].text
        return text.split(": ", 1)[1].split()[0]

    def admin_headers(self, role: str = "service_role") -> dict[str, str]:
        token = jwt.encode({"role": role}, SECRET, algorithm="HS256")
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def make_service(database_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Build services with extra settings; all are closed at the end of the test."""
    opened: list[Service] = []

    async def make(**overrides: Any) -> Service:
        settings = load_settings(
            env_file=None,
            site_url="http://localhost:3000",
            api_external_url="http://auth.test",
            jwt_secret=SECRET,
            database_url=database_url,
            **overrides,
        )
        # Building the engine touches the file system (SQLite paths): off the loop.
        app = await asyncio.to_thread(create_app, settings)
        engine = app.state.service.engine
        await migrate(engine)
        # The e-mail allowance lives in the database, which PostgreSQL tests share:
        # each service starts with a full one.
        async with engine.begin() as connection:
            await connection.execute(email_rate_limits.delete())
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://auth.test"
        )
        service = Service(app, http, settings)
        opened.append(service)
        return service

    yield make
    for service in opened:
        await service.http.aclose()
        await service.app.state.service.engine.dispose()


@pytest.fixture
async def svc(make_service: Callable[..., Any]) -> Service:
    """A service with the default settings (autoconfirm off)."""
    service: Service = await make_service()
    return service


def email() -> str:
    """A fresh address."""
    return f"u{uuid.uuid4().hex[:12]}@example.com"

"""A real outbox (SQLite file or a PostgreSQL schema of its own) behind the dashboard."""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any, ClassVar

import asyncpg
import pytest

# Imported now: loading the PostgreSQL store reads its SQL files (not on the loop).
import apitask.outbox.postgres  # noqa: F401
from apitask.outbox import Outbox, TaskRegistry, open_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from pathlib import Path

    import httpx

    from apitask._types import JSONValue


class Flaky:
    """A task that fails for good while ``broken`` is set (a dead letter), else succeeds."""

    broken: ClassVar[bool] = True
    ran: ClassVar[list[str]] = []

    def __init__(self, name: str) -> None:
        self.name = name
        self.type = "flaky"

    def payload(self) -> Mapping[str, JSONValue]:
        return {"name": self.name}

    async def run(self) -> None:
        if Flaky.broken:
            raise RuntimeError(f"flaky {self.name} is broken")
        Flaky.ran.append(self.name)


class Mail:
    """A stored mail job as MailTask writes it: a message with a secret body."""

    def __init__(self, to: str, code: str = "482913") -> None:
        self.to = to
        self.code = code
        self.type = "mailer.signup"

    def payload(self) -> Mapping[str, JSONValue]:
        return {
            "message": {
                "to": self.to,
                "subject": "Confirm your address",
                "html": f"<p>Your code is {self.code}</p>",
                "text": f"Your code is {self.code}",
                "headers": {"X-Mail-Type": "signup"},
                "type": "signup",
                "message_id": "<m1@example.test>",
                "date": "Sat, 05 Dec 2026 01:00:00 +0000",
            }
        }

    async def run(self) -> None:
        raise RuntimeError("the relay refused the mail")


@pytest.fixture(autouse=True)
def _fresh_flaky() -> None:
    Flaky.broken = True
    Flaky.ran = []


@pytest.fixture
def registry() -> TaskRegistry:
    registry = TaskRegistry()
    registry.register("flaky", lambda type, payload: Flaky(str(payload["name"])))
    registry.register_prefix("mailer.", lambda type, payload: Mail("x@example.test"))
    return registry


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL (resolved here, off the loop: the PostgreSQL probe connects)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/outbox.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def outbox(database: str, registry: TaskRegistry) -> AsyncIterator[Outbox]:
    """A migrated outbox on each database."""
    if database.startswith("sqlite"):
        async with Outbox(open_store(database), registry) as box:
            await box.migrate()
            yield box
        return
    url = database
    schema = f"apitask_dashboard_test_{secrets.token_hex(4)}"
    async with Outbox(open_store(url, schema=schema), registry) as box:
        try:
            await box.migrate()
            yield box
        finally:
            admin = await asyncpg.connect(url)
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()


async def run_jobs(outbox: Outbox) -> None:
    """Run every due job once (failures of Flaky and Mail are final: dead letters)."""
    from apitask import Backoff

    worker = outbox.worker(listen=False, backoff=Backoff(max_attempts=1), poll_interval=0.05)
    await worker.run(until_empty=True)


_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


async def csrf_token(client: httpx.AsyncClient, path: str = "/") -> str:
    """The form token of a page (loading it sets the cookie it is made for)."""
    page = await client.get(path)
    match = _CSRF.search(page.text)
    assert match is not None, page.text
    return match[1]


def form(token: str, **fields: Any) -> dict[str, Any]:
    return {"csrf": token, "confirm": "yes", **fields}

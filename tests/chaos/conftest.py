"""Fixtures of the chaos scenarios, and the summary lines printed at the end of the run.

Each scenario hands its :class:`Tally` to ``chaos_report``; the lines appear
in a "chaos" section of pytest's terminal summary (whatever ``-s`` says),
and are appended to ``$APITASK_CHAOS_REPORT`` when it names a file.
"""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING

import asyncpg
import pytest

from apitask.outbox import Outbox, TaskRegistry
from apitask.outbox.postgres import PostgresStore

from ._support import MailServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from ._support import Tally

_LINES = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_LINES] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(_LINES, [])
    if lines:
        terminalreporter.section("chaos")
        for line in lines:
            terminalreporter.write_line(line)
        path = os.environ.get("APITASK_CHAOS_REPORT")
        if path:
            with open(path, "a") as out:
                out.writelines(line + "\n" for line in lines)


@pytest.fixture
def chaos_report(request: pytest.FixtureRequest) -> Callable[[Tally], None]:
    """Record a scenario's summary line (shown at the end of the run)."""

    def report(tally: Tally) -> None:
        request.config.stash[_LINES].append(tally.line())

    return report


@pytest.fixture
async def schema(postgres_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL schema with the outbox tables and a ``runs`` table; dropped after."""
    name = f"apitask_chaos_{secrets.token_hex(4)}"
    async with Outbox(PostgresStore(postgres_url, schema=name), TaskRegistry()) as outbox:
        await outbox.migrate()
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(
            f'CREATE TABLE "{name}".runs (n integer NOT NULL, pid integer NOT NULL)'
        )
        yield name
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await admin.close()


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, to watch and check what the processes did."""
    conn = await asyncpg.connect(postgres_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def mail_server() -> AsyncIterator[Callable[..., Awaitable[MailServer]]]:
    """Start chaos mail servers (``await mail_server("--flaky", "0.2")``); stopped after."""
    started: list[MailServer] = []

    async def start(*args: str) -> MailServer:
        server = await MailServer.start(*args)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            await server.stop()

"""The tasks chaos worker processes run (``apitask worker --app chaos_tasks:...``).

This directory is put on the workers' PYTHONPATH. Settings come from the
environment:

* ``CHAOS_PG_DSN`` + ``CHAOS_PG_SCHEMA``: a ``chaos.record`` job inserts
  ``(n, pid)`` into ``<schema>.runs`` (no key: a job that runs twice shows
  as two rows, which is what the test counts);
* ``CHAOS_SMTP_PORT``: ``mailer.*`` jobs are sent by an
  :class:`apitask.mail.SMTPClient` to that port of 127.0.0.1.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import asyncpg

from apitask.mail import MailTask, Message, SMTPClient, make_message_id
from apitask.outbox import TaskRegistry

if TYPE_CHECKING:
    from collections.abc import Mapping

    from apitask import JSONValue

_pool: Any = None


async def _pg() -> Any:
    global _pool
    if _pool is None:
        _pool = await asyncpg.create_pool(
            os.environ["CHAOS_PG_DSN"],
            min_size=1,
            max_size=4,
            server_settings={"search_path": os.environ["CHAOS_PG_SCHEMA"]},
        )
    return _pool


class Record:
    """Job ``n``: records that this process ran it."""

    type = "chaos.record"

    def __init__(self, n: int) -> None:
        self.n = n

    def payload(self) -> Mapping[str, JSONValue]:
        return {"n": self.n}

    async def run(self) -> None:
        pool = await _pg()
        await pool.execute("INSERT INTO runs (n, pid) VALUES ($1, $2)", self.n, os.getpid())


def _record(type: str, payload: Mapping[str, JSONValue]) -> Record:
    n = payload["n"]
    if not isinstance(n, int):
        raise TypeError(f"payload n must be an integer, got {n!r}")
    return Record(n)


def records() -> TaskRegistry:
    """``chaos.record`` jobs only."""
    registry = TaskRegistry()
    registry.register("chaos.record", _record)
    return registry


def confirmation(to: str) -> Message:
    """The confirmation mail every chaos scenario sends (a fresh Message-ID each)."""
    return Message(
        to=to,
        subject="Confirm your email address",
        text=f"Welcome, {to}! Confirm with the code in this mail.",
        type="confirmation",
        message_id=make_message_id("chaos.test"),
    )


def smtp_client() -> SMTPClient:
    """The SMTP client of a chaos worker: plain text to the chaos mail server."""
    return SMTPClient(
        host="127.0.0.1",
        port=int(os.environ["CHAOS_SMTP_PORT"]),
        sender="Chaos <chaos@example.org>",
        tls="none",
        local_hostname="chaos-worker.test",
        pool_size=int(os.environ.get("CHAOS_SMTP_POOL", "4")),
    )


def mails() -> TaskRegistry:
    """``mailer.*`` jobs, sent through an SMTPClient (and ``chaos.record`` ones)."""
    registry = records()
    registry.register_prefix("mailer.", MailTask.factory(smtp_client()))
    return registry

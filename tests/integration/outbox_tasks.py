"""Tasks the outbox integration tests store, and worker processes rebuild.

Worker subprocesses load ``outbox_tasks:registry`` (this directory is put on
their PYTHONPATH). Where a run is recorded comes from the environment:

* ``OUTBOX_TEST_RUNS_FILE``: one line "n pid" appended per run (SQLite tests);
* ``OUTBOX_TEST_PG_DSN`` + ``OUTBOX_TEST_PG_SCHEMA``: one row per run in
  ``<schema>.runs`` whose primary key is ``n``, so a second run of a job
  fails loudly; ``<schema>.started`` records starts.
* ``OUTBOX_TEST_HANG=1``: ``test.hang`` jobs start, then never finish.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

import asyncpg

from apitask.outbox import TaskRegistry

if TYPE_CHECKING:
    from collections.abc import Mapping

    from apitask import JSONValue

_pool: Any = None


async def _pg() -> Any:
    global _pool
    if _pool is None:
        _pool = await asyncpg.create_pool(
            os.environ["OUTBOX_TEST_PG_DSN"],
            min_size=1,
            max_size=4,
            server_settings={
                "search_path": os.environ["OUTBOX_TEST_PG_SCHEMA"],
                "synchronous_commit": "off",
            },
        )
    return _pool


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line)


class Record:
    """Records that job ``n`` ran, in the file or table the environment names."""

    def __init__(self, n: int, type: str = "test.record") -> None:
        self.type = type
        self.n = n

    def payload(self) -> Mapping[str, JSONValue]:
        return {"n": self.n}

    async def run(self) -> None:
        path = os.environ.get("OUTBOX_TEST_RUNS_FILE")
        if path:
            await asyncio.to_thread(_append, path, f"{self.n} {os.getpid()}\n")
            return
        pool = await _pg()
        if self.type == "test.hang":
            await pool.execute("INSERT INTO started (n, pid) VALUES ($1, $2)", self.n, os.getpid())
            if os.environ.get("OUTBOX_TEST_HANG") == "1":
                await asyncio.Event().wait()
        await pool.execute("INSERT INTO runs (n, pid) VALUES ($1, $2)", self.n, os.getpid())


def _record(type: str, payload: Mapping[str, JSONValue]) -> Record:
    n = payload["n"]
    assert isinstance(n, int)
    return Record(n, type)


registry = TaskRegistry()
registry.register_prefix("test.", _record)


def make_registry() -> TaskRegistry:
    """The same registry, for the ``module:function`` form of ``--app``."""
    return registry

"""TaskCounters and the scope's own counters."""

from __future__ import annotations

import apitask
from apitask import Outcome, TaskCounters


def test_counts_by_type_and_outcome() -> None:
    """add/get/snapshot agree; unknown keys read as zero."""
    c = TaskCounters()
    c.add("mailer.recovery", Outcome.SUCCEEDED)
    c.add("mailer.recovery", Outcome.SUCCEEDED, 2)
    c.add("mailer.invite", Outcome.FAILED)
    assert c.get("mailer.recovery", Outcome.SUCCEEDED) == 3
    assert c.get("mailer.recovery", Outcome.FAILED) == 0
    assert c.snapshot() == {
        "mailer.recovery": {"succeeded": 3},
        "mailer.invite": {"failed": 1},
    }


async def test_scope_counts_each_outcome() -> None:
    """Scoped tasks are counted as succeeded, failed or cancelled, by type."""
    counters = apitask.scope_counters
    before = counters.snapshot().get("test.count", {})

    async def ok() -> None:
        return None

    async def bad() -> None:
        raise ValueError("x")

    async def forever() -> None:
        import asyncio

        await asyncio.Event().wait()

    async with apitask.scope(timeout=0.01):
        await apitask.run(apitask.task("test.count", ok))
        await apitask.run(apitask.task("test.count", bad))
        await apitask.run(apitask.task("test.count", forever))
    after = counters.snapshot()["test.count"]
    for outcome in ("succeeded", "failed", "cancelled"):
        assert after[outcome] == before.get(outcome, 0) + 1

"""apitask.logs: JSON lines, and the request id in every task the request started."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

import pytest

import apitask
from apitask import Backoff, TransientError, WorkerPool
from apitask.logs import JSONFormatter, RequestIdFilter, current_request_id

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger("apitask.test.logs")


class Lines(logging.Handler):
    """Formats every record as JSON, with the request id filter, and keeps the lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JSONFormatter())
        self.addFilter(RequestIdFilter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def said(self, message: str) -> list[Any]:
        """The request ids of the lines whose message is ``message``."""
        return [line["request_id"] for line in self.lines if line["message"] == message]


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger("apitask")
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_a_line_is_one_json_object_with_the_fields_in_order(lines: Lines) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception(
            "failed %s",
            "here",
            extra={"task_type": "t.x", "attempt": 2, "obj": object(), "color_message": "x"},
        )
    log.info("plain", stack_info=True)
    failed, plain = lines.lines
    assert list(failed)[:6] == ["time", "level", "logger", "message", "request_id", "task_type"]
    assert failed["time"].endswith("Z")
    assert (failed["level"], failed["logger"]) == ("error", "apitask.test.logs")
    assert (failed["message"], failed["request_id"], failed["task_type"]) == (
        "failed here",
        None,
        "t.x",
    )
    assert failed["attempt"] == 2
    assert "color_message" not in failed  # uvicorn's coloured copy of the message
    assert failed["obj"].startswith("<object object")  # not JSON: written with str()
    assert "ValueError: boom" in failed["exception"]
    assert "task_type" not in plain
    assert "exception" not in plain
    assert "test_a_line_is_one_json_object" in plain["stack"]


async def test_a_request_id_given_in_extra_is_kept(lines: Lines) -> None:
    async with apitask.scope(request_id="from-scope"):
        log.info("given", extra={"request_id": "given"})
        log.info("found")
    assert lines.said("given") == ["given"]
    assert lines.said("found") == ["from-scope"]


async def test_scope_tasks_log_their_request_id(lines: Lines) -> None:
    async def work() -> None:
        log.info("in scope task")

    async with apitask.scope(request_id="req-1"):
        await apitask.run(apitask.task("test.logs.scope", work))
    log.info("outside")
    assert lines.said("in scope task") == ["req-1"]
    assert lines.said("outside") == [None]


async def test_pooled_tasks_carry_the_submitting_request_id(lines: Lines) -> None:
    done = asyncio.Event()
    thread_ids: list[str | None] = []

    async def work(name: str) -> None:
        log.info(name)

    async def spawns(pool: WorkerPool) -> None:
        # A task submitted by a pooled task carries the same request id.
        await pool.submit(apitask.task("test.logs.child", work, "child"))

    def sync_work() -> None:
        assert threading.current_thread() is not threading.main_thread()
        thread_ids.append(current_request_id())

    async def last() -> None:
        done.set()

    async with WorkerPool(workers=1, threads=1) as pool:
        async with apitask.scope(request_id="req-A", sink=pool):
            await apitask.run(apitask.task("test.logs.a1", work, "a1"))
            await apitask.run(apitask.task("test.logs.a2", work, "a2"))  # same id, no change
            await apitask.run(apitask.task("test.logs.spawn", spawns, pool))
            await apitask.run(apitask.task("test.logs.sync", sync_work))
        async with apitask.scope(request_id="req-B", sink=pool):
            await apitask.run(apitask.task("test.logs.b", work, "b"))
        await pool.submit(apitask.task("test.logs.none", work, "none"))
        await pool.submit(apitask.task("test.logs.sync-none", sync_work))
        await pool.submit(apitask.task("test.logs.last", last))
        await done.wait()
    assert lines.said("a1") == ["req-A"]
    assert lines.said("a2") == ["req-A"]
    assert lines.said("child") == ["req-A"]
    assert lines.said("b") == ["req-B"]
    assert lines.said("none") == [None]
    assert thread_ids == ["req-A", None]


async def test_a_retried_pooled_task_keeps_its_request_id(lines: Lines) -> None:
    attempts = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        log.info("attempt")
        if attempts == 1:
            raise TransientError("try again")
        done.set()

    fast = Backoff(base=0.001, cap=0.002, max_attempts=3)
    async with WorkerPool(workers=1, backoff=fast, rng=lambda: 0.0) as pool:
        async with apitask.scope(request_id="req-R", sink=pool):
            await apitask.run(apitask.task("test.logs.flaky", flaky))
        await done.wait()
    assert lines.said("attempt") == ["req-R", "req-R"]
    # The pool's own line about the retry carries it too.
    retried = [line for line in lines.lines if line.get("task_type") == "test.logs.flaky"]
    assert retried
    assert {line["request_id"] for line in retried} == {"req-R"}


async def test_a_spilled_task_hands_its_request_id_to_the_sink(lines: Lines) -> None:
    """A task left queued at shutdown is spilled with the id of the request that
    submitted it in the context (an outbox stores it with the job), and the
    pool's line about the spill names that request."""
    seen: list[str | None] = []
    release = asyncio.Event()

    class Sink:
        async def submit(self, task: apitask.Task) -> None:
            seen.append(current_request_id())

        def submit_sync(self, task: apitask.Task) -> None:
            raise AssertionError("a pool spills from its loop")

    class Durable:
        type = "test.logs.durable"

        async def run(self) -> None:
            await release.wait()

        def payload(self) -> dict[str, str]:
            return {}

    pool = WorkerPool(workers=1, shutdown_timeout=0.01, cancel_timeout=1.0, spill=Sink())
    async with pool, apitask.scope(request_id="req-S", sink=pool):
        await apitask.run(Durable())  # runs, and holds the only worker
        await apitask.run(Durable())  # stays queued
    report = pool.report
    assert report is not None
    assert [left.request_id for left in report.spilled] == ["req-S", "req-S"]
    assert seen == ["req-S", "req-S"]
    spilled = [line for line in lines.lines if "did not complete" in line["message"]]
    assert [line["request_id"] for line in spilled] == ["req-S", "req-S"]
    assert current_request_id() is None

"""What the worker pool does with its leftovers at shutdown: spill, then log."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING

from ._request_id import task_request_id

if TYPE_CHECKING:
    from ._pool_state import Leftover
    from ._types import TaskSink

__all__ = ["log_leftover", "spill"]

logger = logging.getLogger("apitask")


async def spill(leftovers: list[Leftover], sink: TaskSink, timeout: float) -> list[Leftover]:
    """Hand every durable leftover to ``sink``; return the leftovers, updated.

    A refusal is logged with the task's type (never its payload: see
    :func:`log_leftover`), and that leftover keeps the error: the report
    never loses a task because the spill failed.
    The whole spill takes ``timeout`` seconds at most.
    """
    result = list(leftovers)
    try:
        async with asyncio.timeout(timeout):
            for i, left in enumerate(leftovers):
                if left.payload is None or left.task is None:
                    continue  # not durable (or its payload() failed): cannot be rebuilt
                # The sink reads the request id from the context (an outbox
                # stores it with the job): give it the one the pool carried.
                carried = task_request_id.set(left.request_id)
                try:
                    await sink.submit(left.task)
                except Exception as exc:
                    error = f"spill failed: {type(exc).__name__}: {exc}"
                    result[i] = dataclasses.replace(left, error=error)
                    logger.error(
                        'apitask: could not spill task "%s": %s',
                        left.type,
                        exc,
                        exc_info=exc,
                        extra={"action": "apitask", "task_type": left.type},
                    )
                else:
                    result[i] = dataclasses.replace(left, spilled=True)
                finally:
                    task_request_id.reset(carried)
    except TimeoutError:
        for i, left in enumerate(result):
            if left.payload is not None and not left.spilled and left.error is None:
                result[i] = dataclasses.replace(left, error=f"spill timed out ({timeout}s)")
    return result


def log_leftover(left: Leftover) -> None:
    """One log record per task that did not complete: WARNING if spilled, else ERROR.

    The record names the task by type and state, never by payload: a payload
    is the task's data (a mail's recipient, body and one-time code) and logs
    are not the place for it. The payload stays in the pool's
    :class:`~apitask.DrainReport`, for code that wants to keep it.
    """
    if left.spilled:
        level, fate = logging.WARNING, "spilled"
    else:
        level, fate = logging.ERROR, "abandoned" + (f" ({left.error})" if left.error else "")
    logger.log(
        level,
        'apitask: task "%s" did not complete before shutdown (%s), %s',
        left.type,
        left.state.value,
        fate,
        extra={"action": "apitask", "task_type": left.type, "request_id": left.request_id},
    )

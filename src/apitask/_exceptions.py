"""The exception hierarchy of apitask.

Every error apitask raises on purpose derives from :class:`ApitaskError`::

    ApitaskError
    ├── TaskError (RuntimeError)        a task could not be accepted: misuse
    │   └── PoolClosedError             the pool no longer takes work
    │   └── QueueFullError              the pool's queue is full (policy "reject")
    └── TransientError                  raised *by a task*: this failure may pass,
                                        retry me (pool and outbox honour it)

Subsystems add their own classes (``apitask.mail.MailError`` and its
subtree, ``apitask.outbox.OutboxError``, ``apitask.outbox.JobDecodeError``,
``apitask.outbox.JobTimeoutError`` under ``TransientError``), always rooted
at :class:`ApitaskError`.
"""

from __future__ import annotations

__all__ = [
    "ApitaskError",
    "PoolClosedError",
    "QueueFullError",
    "TaskError",
    "TransientError",
]


class ApitaskError(Exception):
    """Root of every error apitask raises on purpose."""


class TaskError(ApitaskError, RuntimeError):
    """A task could not be accepted, so it was not run.

    Raised by :func:`apitask.run` after the request scope has been waited
    (the work would otherwise be dropped silently), and by pools that no
    longer accept work.
    """


class PoolClosedError(TaskError):
    """The worker pool is draining or closed and takes no new task."""


class QueueFullError(TaskError):
    """The worker pool's queue is full and its policy is to reject."""


class TransientError(ApitaskError):
    """Raised by a task whose failure may pass: the runner should retry it.

    Pools and the outbox retry a task that raises this (or an exception
    whose class derives from it) with exponential backoff, up to their
    maximum number of attempts; every other exception is final.

    Args:
        message: what went wrong.
        retry_after: seconds the failing side asked us to wait, if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

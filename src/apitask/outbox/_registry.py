"""Which factory rebuilds a stored task, by its type name."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TypeAlias

from .._exceptions import ApitaskError
from .._types import Task

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .._types import JSONValue

__all__ = ["JobDecodeError", "TaskFactory", "TaskRegistry"]

TaskFactory: TypeAlias = "Callable[[str, Mapping[str, JSONValue]], Task]"
"""Rebuilds a task from its type name and the payload its ``payload()`` returned."""


class JobDecodeError(ApitaskError):
    """A stored job cannot be turned back into a task; ``str()`` is the reason.

    The worker moves such a job straight to the dead-letter state: retrying
    cannot help, and raising would crash-loop the worker.
    """


class TaskRegistry:
    """Maps task type names to the factories that rebuild stored tasks.

    Exact names win over prefixes; among prefixes the longest wins, so
    ``"mailer."`` can cover every mail type while ``"mailer.invite"`` has
    its own factory.

    Example::

        registry = TaskRegistry()
        registry.register("audit.write", AuditTask.from_payload)
        registry.register_prefix("mailer.", MailTask.from_payload)
    """

    __slots__ = ("_exact", "_prefixes")

    def __init__(self) -> None:
        self._exact: dict[str, TaskFactory] = {}
        self._prefixes: dict[str, TaskFactory] = {}

    def register(self, type: str, factory: TaskFactory) -> None:
        """Rebuild tasks of exactly ``type`` with ``factory``.

        Raises:
            ValueError: ``type`` is empty or already registered.
        """
        self._add(self._exact, "type", type, factory)

    def register_prefix(self, prefix: str, factory: TaskFactory) -> None:
        """Rebuild tasks whose type starts with ``prefix`` with ``factory``.

        Raises:
            ValueError: ``prefix`` is empty or already registered.
        """
        self._add(self._prefixes, "prefix", prefix, factory)

    @staticmethod
    def _add(table: dict[str, TaskFactory], what: str, key: str, factory: TaskFactory) -> None:
        if not key:
            raise ValueError(f"a task {what} must be a non-empty string")
        if key in table:
            raise ValueError(f"task {what} {key!r} is already registered")
        if not callable(factory):
            raise TypeError(f"factory for {key!r} must be callable, got {factory!r}")
        table[key] = factory

    def factory_for(self, type: str) -> TaskFactory | None:
        """The factory that handles ``type``, or ``None``."""
        factory = self._exact.get(type)
        if factory is not None:
            return factory
        matches = [prefix for prefix in self._prefixes if type.startswith(prefix)]
        return self._prefixes[max(matches, key=len)] if matches else None

    def __contains__(self, type: object) -> bool:
        return isinstance(type, str) and self.factory_for(type) is not None

    def build(self, type: str, payload: str) -> Task:
        """Rebuild the task stored as ``type`` with the JSON text ``payload``.

        Raises:
            JobDecodeError: no factory handles ``type``, the payload is not a
                JSON object, or the factory rejected it.
        """
        factory = self.factory_for(type)
        if factory is None:
            raise JobDecodeError(f"no task factory registered for type {type!r}")
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise JobDecodeError(f"undecodable payload: {exc}") from exc
        if not isinstance(data, dict):
            raise JobDecodeError(f"payload is not a JSON object: {type_name(data)}")
        try:
            task = factory(type, data)
        except Exception as exc:
            raise JobDecodeError(f"task factory for {type!r} failed: {exc!r}") from exc
        if not isinstance(task, Task):
            raise JobDecodeError(f"task factory for {type!r} returned {task!r}, not a Task")
        return task


def type_name(value: object) -> str:
    return type(value).__name__


def encode_payload(task: Task) -> str:
    """The JSON text stored for ``task`` (compact, UTF-8, no NaN).

    Raises:
        TypeError: the task has no ``payload()`` (it is not a DurableTask), or
            its payload is not JSON-serialisable.
    """
    payload = getattr(task, "payload", None)
    if not callable(payload):
        raise TypeError(
            f"task {task.type!r} cannot be stored: it has no payload() "
            "(implement apitask.DurableTask)"
        )
    try:
        return json.dumps(payload(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"task {task.type!r}: payload is not JSON-serialisable: {exc}") from exc

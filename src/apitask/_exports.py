"""Show public names under the path users import them from (as httpx does).

A class written in ``apitask._pool`` is imported as ``apitask.WorkerPool``;
its repr, tracebacks, pickles, ``help()`` and the API docs should say so.
Every public package (``apitask``, ``apitask.mail``, ``apitask.outbox``)
calls this at the end of its ``__init__``.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["show_public_path", "show_public_paths"]

T = TypeVar("T")


def show_public_path(module: str, value: T) -> T:
    """Give ``value`` the ``__module__`` ``module`` if it is written in one of its private modules.

    Only classes and functions have a ``__module__`` of their own to rewrite;
    instances and type aliases are left alone, and so is anything another
    public module defines. Returns ``value``.
    """
    if isinstance(value, type | types.FunctionType) and value.__module__.startswith(f"{module}._"):
        value.__module__ = module
    return value


def show_public_paths(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """:func:`show_public_path` for each of ``names`` in ``namespace`` (a package's globals)."""
    for name in names:
        show_public_path(module, namespace[name])

"""Show public names under the path users import them from.

A class defined in ``apitask._pool`` is imported as ``apitask.WorkerPool``;
its repr, tracebacks, ``help()`` and the API docs should say so.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["set_public_module"]


def set_public_module(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Set ``__module__`` to ``module`` on the classes and functions ``names`` name.

    Call it at the end of a public package's ``__init__`` with ``globals()``
    and ``__all__``. Other values (instances, type aliases) are left alone:
    they have no ``__module__`` of their own to rewrite.
    """
    for name in names:
        value = namespace[name]
        if isinstance(value, type | types.FunctionType):
            value.__module__ = module

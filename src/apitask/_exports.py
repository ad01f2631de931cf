"""Show public names under the path users import them from (as httpx does).

A class written in ``apitask._pool`` is imported as ``apitask.WorkerPool``;
its repr, tracebacks, pickles, ``help()`` and the API docs should say so.
Every public package (``apitask``, ``apitask.mail``, ``apitask.outbox``)
calls this at the end of its ``__init__``.

Names a package loads only when first used (those needing an optional extra,
or moved elsewhere) come from one module ``__getattr__``: :func:`lazy_names`.
"""

from __future__ import annotations

import importlib
import types
import warnings
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ["lazy_names", "show_public_path", "show_public_paths"]

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


def lazy_names(
    package: str,
    modules: Mapping[str, str],
    *,
    extra: str | None = None,
    moved: bool = False,
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each name of ``modules`` is imported
    from its module (relative to ``package`` when it starts with a dot) when first used.

    The value is shown under ``package`` (:func:`show_public_path`). Any other
    name is an ``AttributeError``, as for a plain module.

    Args:
        package: the package's ``__name__``.
        modules: the module each lazy name is defined in.
        extra: the ``pip install apitask[<extra>]`` the names need: a missing
            third-party module is then an ``ImportError`` that says so.
        moved: the names moved to their module; each use warns
            (``DeprecationWarning``) with the new place.
    """

    # Any, not object: the type checker reads a lazy name it sees no import for
    # (Django's, below TYPE_CHECKING nowhere) through this signature.
    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if moved:
            warnings.warn(
                f"{package}.{name} moved to {module}.{name}; the old name goes in the next release",
                DeprecationWarning,
                stacklevel=2,
            )
        try:
            loaded = importlib.import_module(module, package)
        except ModuleNotFoundError as exc:
            # Only a missing third-party module is the extra's; a missing part of
            # apitask itself is a bug to show as it is.
            if extra is None or (exc.name or "apitask").partition(".")[0] == "apitask":
                raise
            raise ModuleNotFoundError(
                f"{package}.{name} needs the {extra!r} extra: pip install 'apitask[{extra}]' "
                f"({exc})",
                name=exc.name,
            ) from exc
        return show_public_path(package, getattr(loaded, name))

    return __getattr__

"""The public surface is exactly what ``__all__`` says."""

from __future__ import annotations

import types

import pytest

import apitask
import apitask.asgi
import apitask.logs
import apitask.wsgi


def test_all_is_exact_and_importable() -> None:
    """Every name in __all__ exists, and no public name is missing from it."""
    public = {
        name
        for name, value in vars(apitask).items()
        # Submodules (apitask.asgi, apitask.wsgi) appear here once imported.
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    not_api = {"annotations"}  # the __future__ import
    assert set(apitask.__all__) == public - not_api
    for name in apitask.__all__:
        assert getattr(apitask, name) is not None


def test_public_names_show_their_public_module() -> None:
    """Reprs, tracebacks and the API docs say ``apitask.WorkerPool``, not ``apitask._pool``."""
    shown = {
        name: value.__module__
        for name in apitask.__all__
        if isinstance(value := getattr(apitask, name), type | types.FunctionType)
    }
    assert shown == dict.fromkeys(shown, "apitask")
    assert {"RequestScope", "WorkerPool", "TaskError", "run", "task"} <= shown.keys()
    assert repr(apitask.RequestScope) == "<class 'apitask.RequestScope'>"
    assert repr(apitask.ScopeState.OPEN) == "<ScopeState.OPEN: 'open'>"


@pytest.mark.parametrize("module", [apitask.asgi, apitask.wsgi, apitask.logs])
def test_public_modules_define_their_classes(module: types.ModuleType) -> None:
    """The public modules' classes already live there: nothing to rewrite."""
    for name in module.__all__:
        value = getattr(module, name)
        if isinstance(value, type):
            assert value.__module__ == module.__name__

"""The public surface is exactly what ``__all__`` says."""

from __future__ import annotations

import types

import apitask


def test_all_is_exact_and_importable() -> None:
    """Every name in __all__ exists, and no public name is missing from it.

    Subpackages (``apitask.outbox``...) become attributes once imported; they
    are namespaces, not names of the core API.
    """
    public = {
        name
        for name, value in vars(apitask).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    not_api = {"annotations"}  # the __future__ import
    assert set(apitask.__all__) == public - not_api
    for name in apitask.__all__:
        assert getattr(apitask, name) is not None

"""apitask.outbox's public surface: exactly ``__all__``, each name at its public path."""

from __future__ import annotations

import inspect
import pickle
import types

import apitask.outbox
from apitask.outbox import Job, JobState, OutboxError, Stats


def test_all_is_exact_and_importable() -> None:
    """Every name in __all__ exists, and no public name is missing from it."""
    public = {
        name
        for name, value in vars(apitask.outbox).items()
        # Submodules (apitask.outbox.sqlite, ...) appear here once imported.
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(apitask.outbox.__all__) == public - {"annotations"}  # the __future__ import
    assert len(set(apitask.outbox.__all__)) == len(apitask.outbox.__all__)
    namespace: dict[str, object] = {}
    exec("from apitask.outbox import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(apitask.outbox.__all__)


def test_public_classes_and_functions_show_their_public_module() -> None:
    """Reprs, tracebacks and the API docs say apitask.outbox.Outbox, not apitask.outbox._outbox."""
    shown = [
        value
        for value in (getattr(apitask.outbox, name) for name in apitask.outbox.__all__)
        if isinstance(value, type) or inspect.isfunction(value)
    ]
    assert {value.__name__ for value in shown} >= {"Outbox", "Job", "Worker", "open_outbox"}
    assert {value.__qualname__: value.__module__ for value in shown} == {
        value.__qualname__: "apitask.outbox" for value in shown
    }
    assert repr(JobState.DEAD) == "<JobState.DEAD: 'dead'>"


def test_records_and_errors_pickle_by_their_public_path() -> None:
    """A pickled job record, state or error names apitask.outbox and loads back."""
    stats = Stats({"mailer.invite": {JobState.DEAD: 2}})
    for value in (JobState.RETRYING, stats, OutboxError("down")):
        data = pickle.dumps(value)
        assert b"apitask.outbox." not in data  # no private module named
        again = pickle.loads(data)
        assert type(again) is type(value)
    assert Job.__module__ == "apitask.outbox"

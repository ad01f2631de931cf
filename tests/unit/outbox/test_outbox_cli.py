"""The command line's helpers (apitask.cli): durations, registry loading, database URLs."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from apitask.cli import _duration_option as duration_option
from apitask.cli import load_registry
from apitask.outbox import TaskRegistry, open_store
from apitask.outbox.postgres import PostgresStore
from apitask.outbox.sqlite import SQLiteStore

registry = TaskRegistry()
not_a_registry = 42


def make_registry() -> TaskRegistry:
    return registry


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("1.5", 1.5), ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5),
     ("2h", 7200.0), ("7d", 604800.0), ("0", 0.0)],
)  # fmt: skip
def test_duration_options_read_like_go(text: str, seconds: float) -> None:
    """Options take apitask.parse_duration's syntax: Go's, plain seconds, d for days."""
    assert duration_option(text) == seconds


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "use Go syntax"), ("10x", "use Go syntax"), ("1m 30s", "use Go syntax"),
     ("-5s", "must not be negative"), ("-1d", "must not be negative")],
)  # fmt: skip
def test_bad_or_negative_duration_options_are_refused(text: str, reason: str) -> None:
    """Not a duration, or a negative one: an argparse type error naming the input."""
    with pytest.raises(argparse.ArgumentTypeError, match=rf"invalid duration '{text}' \({reason}"):
        duration_option(text)


def test_registries_load_from_module_attribute_or_factory() -> None:
    """module:attribute gives a registry, or a function returning one; else ValueError."""
    assert load_registry(f"{__name__}:registry") is registry
    assert load_registry(f"{__name__}:make_registry") is registry
    with pytest.raises(ValueError, match="expected module:attribute"):
        load_registry("just_a_module")
    with pytest.raises(ValueError, match="cannot load"):
        load_registry(f"{__name__}:missing")
    with pytest.raises(ValueError, match=r"not an apitask\.outbox\.TaskRegistry"):
        load_registry(f"{__name__}:not_a_registry")


def test_database_urls_pick_the_store() -> None:
    """SQLite and PostgreSQL URLs (with or without a driver name) map to their stores."""
    sqlite = open_store("sqlite+aiosqlite:////tmp/x.db", synchronous="NORMAL")
    assert isinstance(sqlite, SQLiteStore)
    assert (sqlite.path, sqlite.synchronous) == ("/tmp/x.db", "NORMAL")
    assert isinstance(open_store("sqlite:///relative.db"), SQLiteStore)
    for url in ("postgres://u@h/db", "postgresql://u@h/db", "postgresql+asyncpg://u@h/db"):
        store = open_store(url, schema="jobs")
        assert isinstance(store, PostgresStore)
        assert store.dsn == "postgresql://u@h/db"
    with pytest.raises(ValueError, match="SQLite has no schemas"):
        open_store("sqlite:///x.db", schema="jobs")
    for bad in ("mysql://u:secret@h/db", "sqlite://", "x.db"):
        with pytest.raises(ValueError, match="url: expected") as caught:
            open_store(bad)
        assert "secret" not in str(caught.value)


@pytest.mark.parametrize("name", ["add_worker_arguments", "load_registry", "run_worker_command"])
def test_command_line_helpers_moved_to_apitask_cli(name: str) -> None:
    """The helpers are apitask.cli's; their old apitask.outbox names still work, with a
    DeprecationWarning naming the new place, and are not in apitask.outbox.__all__."""
    import apitask.cli
    import apitask.outbox

    assert name in apitask.cli.__all__
    assert name not in apitask.outbox.__all__
    with pytest.warns(DeprecationWarning, match=rf"moved to apitask\.cli\.{name}"):
        old = getattr(apitask.outbox, name)
    assert old is getattr(apitask.cli, name)
    with pytest.raises(AttributeError, match="no attribute 'add_outbox_commands'"):
        apitask.outbox.add_outbox_commands  # noqa: B018  # private now, never an alias


def test_python_dash_m_apitask_runs_the_command_line() -> None:
    """``python -m apitask`` is the same command as the ``apitask`` console script."""
    import apitask

    done = subprocess.run(
        [sys.executable, "-m", "apitask", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == apitask.__version__

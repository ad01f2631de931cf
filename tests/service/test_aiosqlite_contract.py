"""The part of aiosqlite's private API that ``storage/sqlite_driver.py`` stands on.

The driver subclasses ``aiosqlite.Connection`` and calls what aiosqlite keeps
private: ``_execute`` (its hand-off to the connection's thread), ``_conn`` (the
sqlite3 connection in that thread) and ``_thread`` (the thread, made a daemon
before it starts). aiosqlite may change any of these in any release, so
apitask-auth pins it to the versions tested (apitask-auth/pyproject.toml), and
this test says in words what differs when a release is tried against the pin.
"""

from __future__ import annotations

import inspect
import sqlite3
import threading
from importlib.metadata import requires
from typing import TYPE_CHECKING

import aiosqlite
import pytest

from apitask_auth.storage import sqlite_driver

if TYPE_CHECKING:
    from pathlib import Path


# apitask-auth's declared aiosqlite range, as installed (read at import: off the loop).
_PIN = next((r for r in requires("apitask-auth") or [] if r.startswith("aiosqlite")), "none")


def _fail(problems: list[str]) -> None:
    if problems:
        pytest.fail(
            f"aiosqlite {aiosqlite.__version__} differs from what "
            "apitask_auth/storage/sqlite_driver.py relies on (apitask-auth pins "
            f"{_PIN}):\n- " + "\n- ".join(problems) + "\nAdapt the driver to this release "
            "(or measure again whether it still pays: docs/benchmarks.md) before widening "
            "the pin.",
            pytrace=False,
        )


def test_the_private_api_has_the_shape_the_driver_uses() -> None:
    """The constructor's arguments, ``_execute``, ``_conn``, ``_thread``, and the
    ``commit``/``rollback`` the driver extends, as the driver calls them."""
    problems: list[str] = []
    connection_class = aiosqlite.Connection
    init = list(inspect.signature(connection_class.__init__).parameters)[1:3]
    if init != ["connector", "iter_chunk_size"]:
        problems.append(f"Connection(connector, iter_chunk_size) now takes {init}")
    execute = getattr(connection_class, "_execute", None)
    if not inspect.iscoroutinefunction(execute):
        problems.append("Connection._execute is no longer a coroutine function")
    else:
        kinds = [p.kind for p in inspect.signature(execute).parameters.values()][1:]
        if kinds != [
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ]:
            problems.append(f"Connection._execute(fn, *args, **kwargs) is now {execute}")
    if not isinstance(inspect.getattr_static(connection_class, "_conn", None), property):
        problems.append("Connection._conn is no longer a property")
    problems.extend(
        f"Connection.{name} is no longer a coroutine function"
        for name in ("commit", "rollback")
        if not inspect.iscoroutinefunction(getattr(connection_class, name, None))
    )
    # Not awaited: the thread must exist, unstarted, before the connection opens.
    unopened = connection_class(lambda: sqlite3.connect(":memory:"), 64)
    thread = getattr(unopened, "_thread", None)
    if not isinstance(thread, threading.Thread):
        problems.append(f"Connection()._thread is {thread!r}, not the connection's own Thread")
    elif thread.is_alive():
        problems.append("Connection()._thread is started before the connection is awaited")
    _fail(problems)


async def test_the_private_api_does_what_the_driver_needs(tmp_path: Path) -> None:
    """``_execute`` runs a function with its arguments in the connection's own
    daemon thread, on the sqlite3 connection ``_conn``, and returns its result."""
    opening: list[str] = []
    try:
        connection = await sqlite_driver.connect(str(tmp_path / "contract.db"))
    except AttributeError as exc:  # what a missing private attribute looks like
        opening.append(f"the driver cannot open a connection: {exc}")
    _fail(opening)  # outside the except: the message alone, no chained traceback
    try:
        problems: list[str] = []
        conn: object = connection._conn  # typed by aiosqlite: checked here all the same
        if not isinstance(conn, sqlite3.Connection):
            problems.append(f"Connection._conn is {conn!r}, not sqlite3's")
        ran_in = await connection._execute(  # type: ignore[no-untyped-call]
            lambda conn, sql: (threading.get_ident(), conn.execute(sql).fetchone()),
            connection._conn,
            "SELECT 41 + 1",
        )
        if ran_in != (connection._thread.ident, (42,)):
            problems.append(
                f"Connection._execute(fn, conn, sql) gave {ran_in!r}, not fn's result "
                "from the connection's thread"
            )
        if not connection._thread.daemon:
            problems.append("Connection._thread could not be made a daemon before it started")
        _fail(problems)
    finally:
        await connection.close()

"""Importing apitask.outbox loads the SQLite store, so open_outbox reads no file on the loop."""

from __future__ import annotations

import subprocess
import sys


def test_the_sqlite_store_and_its_sql_load_with_the_package() -> None:
    code = (
        "import sys, apitask.outbox\n"
        "assert 'apitask.outbox.sqlite' in sys.modules\n"
        "assert 'asyncpg' not in sys.modules, 'the PostgreSQL driver stays optional'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

"""Request ids: taken from the client when safe, else generated; found wherever a task runs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import apitask
import apitask.logs
from apitask._request_id import _new_id_prefix, request_id_from_header


@pytest.mark.parametrize("header", ["req-42", "a" * 200, "ünïcode id"])
def test_a_printable_header_of_sane_length_is_kept(header: str) -> None:
    """The id a client or proxy sent is the request's id."""
    assert request_id_from_header(header) == header


@pytest.mark.parametrize("header", [None, "", "a" * 201, "forged\nline", "bell\x07"])
def test_a_missing_or_unsafe_header_is_replaced(header: str | None) -> None:
    """No header, an absurdly long one, or one with control characters gets a fresh id."""
    generated = request_id_from_header(header)
    assert generated != header
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


async def test_current_request_id_is_the_scopes_and_none_outside() -> None:
    """Inside a scope it is the scope's id; outside any request it is None."""
    assert apitask.current_request_id() is None
    async with apitask.scope(request_id="req-7"):
        assert apitask.current_request_id() == "req-7"
    assert apitask.current_request_id() is None


def test_the_logs_module_path_still_works() -> None:
    """apitask.logs.current_request_id, where it was first published, is the same function."""
    assert apitask.logs.current_request_id is apitask.current_request_id


def test_generated_request_ids_are_unique_and_a_fork_draws_a_new_prefix() -> None:
    """A fresh id is a per-process prefix plus a counter; a forked child gets a new prefix."""
    ids = [request_id_from_header(None) for _ in range(3)]
    assert len(set(ids)) == 3
    assert len({generated[:16] for generated in ids}) == 1
    # In a single-threaded interpreter of its own, fork and compare.
    code = (
        "import os, sys\n"
        "from apitask._request_id import request_id_from_header as request_id\n"
        "parent = request_id(None)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    print(request_id(None), flush=True)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print(parent)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    child, parent = out.stdout.split()
    assert child[:16] != parent[:16]
    assert all(re.fullmatch(r"[0-9a-f]{32}", generated) for generated in (child, parent))
    # The hook itself, in this process (the child's coverage is not collected).
    before = request_id_from_header(None)
    _new_id_prefix()
    assert request_id_from_header(None)[:16] != before[:16]

"""Node.js and tests/js's npm packages for the supabase-js tests: found, or skip / fail.

Locally a machine without Node (or without ``scripts/install-node-deps`` run) skips
those tests, saying why; in CI (``APITASK_REQUIRE_NODE=1``, set by .ci/run) it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "js"
# @noble/hashes (otpauth's one dependency) needs 20.19; supabase-js 2.109 needs 20.
MINIMUM = (20, 19)


class _Missing(Exception):
    """What stops the supabase-js tests from running here."""


def _node() -> str:
    """The ``node`` binary, recent enough, with tests/js's packages installed."""
    node = shutil.which("node")
    if node is None:
        raise _Missing(
            "node not found on PATH: install Node.js 20.19 or newer, then scripts/install-node-deps"
        )
    version = subprocess.run(
        [node, "--version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    major, minor, *_ = (int(part) for part in version.lstrip("v").split("."))
    if (major, minor) < MINIMUM:
        raise _Missing(f"Node.js {version} is too old: 20.19 or newer is needed")
    if not (SCRIPTS / "node_modules" / ".installed").is_file():
        raise _Missing(
            f"{SCRIPTS / 'node_modules'} is not installed: run scripts/install-node-deps"
        )
    return node


def require_node() -> str:
    """The ``node`` binary with tests/js's packages installed, or skip (locally) /
    fail (CI: APITASK_REQUIRE_NODE=1)."""
    try:
        return _node()
    except _Missing as missing:
        if os.environ.get("APITASK_REQUIRE_NODE") == "1":
            pytest.fail(f"{missing}; CI requires it (APITASK_REQUIRE_NODE=1)")
        pytest.skip(str(missing))

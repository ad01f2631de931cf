"""run_worker_command's cleanup hook: awaited on the worker's loop after the worker stopped."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

import pytest

from apitask.cli import add_worker_arguments, run_worker_command
from apitask.outbox import TaskRegistry

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.no_blockbuster  # the command runs its own event loop
@pytest.mark.parametrize("url", ["sqlite:///{tmp}/jobs.db", "sqlite:///{tmp}/missing/jobs.db"])
def test_cleanup_runs_on_the_workers_loop_whatever_the_outcome(tmp_path: Path, url: str) -> None:
    """Called once the worker has stopped: after a clean run and after a failed start."""
    parser = argparse.ArgumentParser()
    add_worker_arguments(parser)
    args = parser.parse_args(["--url", url.format(tmp=tmp_path), "--until-empty"])
    loops: list[asyncio.AbstractEventLoop] = []

    async def cleanup() -> None:
        loops.append(asyncio.get_running_loop())

    status = run_worker_command(args, TaskRegistry(), cleanup=cleanup)
    assert status == (0 if "missing" not in url else 1)
    assert len(loops) == 1
    assert loops[0].is_closed()  # it was the command's own loop, now finished


@pytest.mark.no_blockbuster  # the command runs its own event loop
def test_prefetch_is_an_option_checked_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_worker_arguments(parser)
    url = f"sqlite:///{tmp_path}/jobs.db"
    args = parser.parse_args(["--url", url, "--until-empty", "--prefetch", "-1"])
    assert run_worker_command(args, TaskRegistry()) == 1
    assert "prefetch must be >= 0, got -1" in capsys.readouterr().err
    args = parser.parse_args(["--url", url, "--until-empty", "--prefetch", "0"])
    assert run_worker_command(args, TaskRegistry()) == 0

"""Real server subprocesses for acceptance tests: start, learn the URL, stop gracefully.

The server's own log line ("Uvicorn running on http://127.0.0.1:PORT") says when
it is ready and on which port: no polling, no fixed sleeps. A thread reads the
log to the end (a full pipe would stall the server) and keeps it for error
messages. The child inherits the environment, so coverage measures it too
(pyproject's ``patch = ["subprocess"]``); SIGTERM lets uvicorn shut down cleanly.

:func:`server` is for sync fixtures (schemathesis), :func:`running_server` for
async tests (it runs the blocking parts in a thread, off the event loop).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
from contextlib import asynccontextmanager, contextmanager
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
    from pathlib import Path

_RUNNING = re.compile(r"Uvicorn running on (http://[\w.:\[\]]+)")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for servers that cannot bind port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def uvicorn_command(app: str, *args: str) -> list[str]:
    """``python -m uvicorn APP --host 127.0.0.1 --port 0 ARGS`` with this interpreter."""
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "0", *args]


class ServerProcess:
    """One server subprocess and its collected log."""

    def __init__(
        self, command: Sequence[str], *, env: Mapping[str, str] | None, cwd: Path | None
    ) -> None:
        self.output: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        self._process = subprocess.Popen(
            command,
            env=dict(os.environ if env is None else env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert self._process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self._process.stdout,))
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.output.append(line)
            if self.url is None and (found := _RUNNING.search(line)):
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()  # exited: wake the waiter either way

    def wait_ready(self) -> str:
        """Block until the server says where it listens; raise with its log if it does not."""
        self._ready.wait(START_TIMEOUT)
        if self.url is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        return self.url

    def stop(self) -> None:
        """SIGTERM, wait for a graceful exit (SIGKILL after STOP_TIMEOUT), collect the log."""
        if self._process.poll() is None:
            self._process.terminate()
        try:
            self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join()
        if self._process.stdout is not None:
            self._process.stdout.close()


@contextmanager
def server(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Iterator[str]:
    """Run ``command`` (a uvicorn-based server) and yield its base URL until the block ends.

    ``env`` is the child's whole environment (default: this process's).
    """
    process = ServerProcess(command, env=env, cwd=cwd)
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@asynccontextmanager
async def running_server(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> AsyncIterator[str]:
    """:func:`server` for async tests: every blocking step runs in a thread."""
    process = await asyncio.to_thread(ServerProcess, command, env=env, cwd=cwd)
    try:
        yield await asyncio.to_thread(process.wait_ready)
    finally:
        await asyncio.to_thread(process.stop)

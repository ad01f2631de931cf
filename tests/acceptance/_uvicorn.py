"""Real server subprocesses for end-to-end tests: start, learn the URL, stop gracefully.

The one helper every uvicorn-subprocess test uses (acceptance, the ASGI and
pool integration tests). The server's own log line ("Uvicorn running on
http://127.0.0.1:PORT") says when it is ready and on which port: no polling,
no fixed sleeps. A thread reads the log to the end (a full pipe would stall
the server), keeps it for error messages and assertions, and wakes whoever
waits for a line (:meth:`ServerProcess.wait_for_output`). Unless told
otherwise the child inherits the environment, so coverage measures it too
(pyproject's ``patch = ["subprocess"]``); SIGTERM lets uvicorn shut down
cleanly and :meth:`ServerProcess.stop` returns the exit status.

:func:`server` is for sync fixtures (schemathesis, the supabase client),
:func:`running_server` and :func:`running_process` for async tests (they run
the blocking parts in a thread, off the event loop).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
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
STOP_TIMEOUT = 60.0
# uvicorn re-raises the signal it handled once its shutdown is complete.
GRACEFUL_EXIT = (0, -signal.SIGTERM)


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
        self._url: str | None = None
        self._changed = threading.Condition()
        self._ended = False
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

    @property
    def url(self) -> str:
        """The base URL the server said it listens on.

        Raises:
            RuntimeError: it has not said so (yet).
        """
        if self._url is None:
            raise RuntimeError("the server is not ready:\n" + self.log)
        return self._url

    @property
    def log(self) -> str:
        """Everything the server printed so far."""
        with self._changed:
            return "".join(self.output)

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.output.append(line)
                if self._url is None and (found := _RUNNING.search(line)):
                    self._url = found.group(1)
                self._changed.notify_all()
        with self._changed:
            self._ended = True  # exited: wake the waiters either way
            self._changed.notify_all()

    def wait_for_output(self, text: str, timeout: float = START_TIMEOUT) -> bool:
        """Block until the server printed a line containing ``text``; False if it
        exited (or ``timeout`` passed) without doing so."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._ended or any(text in line for line in self.output), timeout
            ) and any(text in line for line in self.output)

    def wait_ready(self) -> str:
        """Block until the server says where it listens; raise with its log if it does not."""
        if not self.wait_for_output("Uvicorn running on") or self._url is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + self.log)
        return self._url

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self._process.pid

    def send_signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` (SIGSTOP freezes it, SIGCONT thaws it) without waiting."""
        if self._process.poll() is None:
            self._process.send_signal(signum)

    def terminate(self) -> None:
        """Send SIGTERM (uvicorn's graceful shutdown) without waiting."""
        if self._process.poll() is None:
            self._process.terminate()

    def kill(self) -> int:
        """SIGKILL: no shutdown at all (a crash, an OOM kill); returns the exit status."""
        self._process.kill()
        return self.stop()

    def stop(self) -> int:
        """SIGTERM, wait for a graceful exit (SIGKILL after STOP_TIMEOUT), collect the log.

        Returns:
            The exit status (negative: the signal that ended it).
        """
        self.terminate()
        try:
            code = self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self._reader.join()
        if self._process.stdout is not None:
            self._process.stdout.close()
        return code


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
async def running_process(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> AsyncIterator[ServerProcess]:
    """Run ``command`` until the block ends, yielding the ready :class:`ServerProcess`
    (its ``url``, ``log``, ``terminate``, ``stop``) to async tests."""
    process = await asyncio.to_thread(ServerProcess, command, env=env, cwd=cwd)
    try:
        await asyncio.to_thread(process.wait_ready)
        yield process
    finally:
        await asyncio.to_thread(process.stop)


@asynccontextmanager
async def running_server(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> AsyncIterator[str]:
    """:func:`server` for async tests: every blocking step runs in a thread."""
    async with running_process(command, env=env, cwd=cwd) as process:
        yield process.url

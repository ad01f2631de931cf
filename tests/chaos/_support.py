"""What the chaos scenarios share: processes, the mail server, polling, the tally."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping

    import asyncpg

HERE = Path(__file__).resolve().parent
FULL = os.environ.get("APITASK_CHAOS_FULL") == "1"
"""``scripts/chaos`` sets it: the sizes of issue #8 instead of the CI sizes."""
SEED = int(os.environ.get("APITASK_CHAOS_SEED", "8"))
"""The flaky mail server's seed (``scripts/chaos`` gives each round its own)."""


def size(ci: int, full: int) -> int:
    """The scenario size: ``full`` under ``scripts/chaos``, else ``ci``."""
    return full if FULL else ci


# -- the tally every scenario prints ---------------------------------------------------


@dataclass
class Tally:
    """Sent, delivered, lost and duplicated, counted by id.

    ``deliveries`` holds one entry per time an id was delivered (run,
    accepted by the mail server...); ``unexpected`` are delivered ids that
    were never sent (e.g. the mail of a rolled-back sign-up).
    """

    scenario: str
    sent: set[str]
    deliveries: Counter[str]
    notes: Mapping[str, object] = field(default_factory=dict)

    @property
    def delivered(self) -> int:
        return sum(1 for id in self.sent if self.deliveries[id])

    @property
    def lost(self) -> int:
        return len(self.sent) - self.delivered

    @property
    def duplicated(self) -> int:
        return sum(count - 1 for count in self.deliveries.values() if count > 1)

    @property
    def unexpected(self) -> set[str]:
        return set(self.deliveries) - self.sent

    def line(self) -> str:
        extra = "".join(f", {key} {value}" for key, value in self.notes.items())
        return (
            f"{self.scenario}: sent {len(self.sent)}, delivered {self.delivered}, "
            f"lost {self.lost}, duplicated {self.duplicated}{extra}"
        )


# -- processes ---------------------------------------------------------------------------


def env_with(**extra: str) -> dict[str, str]:
    """This process's environment and ``extra``; importable: this directory's modules
    (``chaos_tasks`` for ``apitask worker --app``) and this package (``chaos.*``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env | extra


async def python(
    *args: str,
    env: dict[str, str] | None = None,
    stdout: bool = False,
    pass_fds: tuple[int, ...] = (),
) -> Process:
    """Start ``python *args``; with ``stdout`` its output is piped for :meth:`Process.line`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=env or env_with(),
        stdout=asyncio.subprocess.PIPE if stdout else None,
        pass_fds=pass_fds,
    )
    return Process(proc)


class Process:
    """A child process that is always reaped (killed if still running at :meth:`reap`)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def line(self, timeout: float = 30.0) -> str:
        """The next line it prints (its stdout must be piped)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            raw = await self.proc.stdout.readline()
        if not raw:
            raise EOFError(f"process {self.pid} closed its output (exit {self.proc.returncode})")
        return raw.decode().rstrip("\n")

    async def rest(self, timeout: float = 30.0) -> list[str]:
        """Every line it prints until it closes its output (its stdout must be piped)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            raw = await self.proc.stdout.read()
        return raw.decode().splitlines()

    async def wait(self, timeout: float) -> int:
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    async def reap(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def poll(
    probe: Callable[[], Awaitable[int]],
    done: Callable[[int], bool],
    *,
    what: str,
    timeout: float,
    every: float = 0.05,
) -> int:
    """Probe another process's progress (a row count...) until ``done``; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what} (last: {value})")
        await asyncio.sleep(every)  # the progress is in another process


async def kill_holding(
    process: Process, pg: asyncpg.Connection, jobs: str, column: str
) -> set[Any]:
    """SIGKILL ``process`` and return ``column`` of the outbox jobs it held leases on then.

    It is frozen (SIGSTOP) first, so that the leases read are exactly those it
    held when it died: a frozen worker claims nothing more and writes no
    outcome back (a write it had already sent may still land: then a job is
    counted that cannot run twice, and the bound only gets looser).
    """
    process.signal(signal.SIGSTOP)
    rows = await pg.fetch(
        f"SELECT {column} AS held FROM {jobs} WHERE state = 'running' AND locked_by LIKE $1",
        f"%:{process.pid}:%",  # a worker's name is host:pid:random
    )
    process.signal(signal.SIGKILL)
    assert await process.wait(10) == -signal.SIGKILL
    return {row["held"] for row in rows}


# -- the mail server -------------------------------------------------------------------


class MailServer:
    """``chaos_smtp.py`` in its own process, its report lines read as they come."""

    def __init__(self, process: Process, port: int) -> None:
        self.process = process
        self.port = port
        self.accepted: Counter[str] = Counter()  # by Message-ID
        self.delivered_to: Counter[str] = Counter()  # by recipient
        self.failed: Counter[str] = Counter()  # by kind: 421, 451, drop
        self.refused: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, *args: str) -> MailServer:
        process = await python(str(HERE / "chaos_smtp.py"), *args, stdout=True)
        try:
            ready = await process.line()
        except BaseException:
            await process.reap()
            raise
        word, port = ready.split()
        assert word == "ready", ready
        return cls(process, int(port))

    async def _read(self) -> None:
        while True:
            try:
                line = await self.process.line(timeout=3600)
            except EOFError:
                return
            kind, *rest = line.split()
            if kind == "accepted":
                self.accepted[rest[0]] += 1
                self.delivered_to[rest[1]] += 1
            elif kind == "failed":
                self.failed[rest[0]] += 1
            elif kind == "refused":
                self.refused.append(rest[1])
            self._changed.set()

    async def wait_for(self, done: Callable[[], bool], *, timeout: float) -> bool:
        """Wait until ``done()`` holds, re-checked at each line the server prints.

        Returns ``False`` at the deadline: the caller reports what arrived, then fails.
        """
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    def has_all(self, message_ids: Iterable[str]) -> Callable[[], bool]:
        """A ``wait_for`` condition: each of ``message_ids`` was accepted."""
        wanted = set(message_ids)
        return lambda: all(self.accepted[id] for id in wanted)

    def reached(self, recipients: Iterable[str]) -> Callable[[], bool]:
        """A ``wait_for`` condition: a mail to each of ``recipients`` was accepted."""
        wanted = set(recipients)
        return lambda: all(self.delivered_to[rcpt] for rcpt in wanted)

    async def stop(self) -> None:
        await self.process.reap()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

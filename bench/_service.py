"""A real ``apitask-auth serve`` process and a slow mail server, for the service benchmarks.

Both run as separate processes so the client measuring latency shares no
event loop with them. The service runs in dev mode (migrations at start) but
with ``GOTRUE_SMTP_HOST`` set, so it sends real SMTP to the slow server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import httpx
import jwt
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from collections.abc import Iterator


JWT_SECRET = "bench-secret-" + "x" * 40
MODES = ("inline", "request", "pool", "outbox", "inline+match", "pool+match", "outbox+match")
"""Delivery modes to measure. ``+match`` turns on the service's response-time
matching (GOTRUE_SECURITY_MATCH_RESPONSE_TIMES), off otherwise: without the
suffix a run shows what the delivery mode alone does to response times."""
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LineWatcher:
    """Reads a process's output in a thread and signals lines that match."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<eof>")
            self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> str:
        """Return the first line containing ``text``; raise if the process ends first."""
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(text in line or line == "<eof>" for line in self.lines), timeout
            )
            if not found:
                raise TimeoutError(f"no line with {text!r} within {timeout} s")
            line = next(line for line in self.lines if text in line or line == "<eof>")
            if line == "<eof>":
                raise RuntimeError("process ended:\n" + "\n".join(self.lines[-30:]))
            return line

    def last_count(self, prefix: str) -> int:
        """The number in the last ``<prefix> N`` line (0 if none yet)."""
        with self._cond:
            for line in reversed(self.lines):
                if line.startswith(prefix):
                    return int(line.split()[-1])
        return 0


@contextlib.contextmanager
def helper_process(script: str, *args: object) -> Iterator[tuple[str, LineWatcher]]:
    """``python bench/SCRIPT ARGS...`` until the block ends: (its ``ready`` line, its output)."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
    )
    watcher = LineWatcher(proc.stdout)
    try:
        yield watcher.wait_for("ready", 30), watcher
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def slow_smtp(delay: float) -> Iterator[tuple[int, LineWatcher]]:
    """A slow SMTP server process on a free port: (port, its output)."""
    port = free_port()
    with helper_process("_slow_smtp.py", port, delay) as (_ready, watcher):
        yield port, watcher


def service_command() -> list[str]:
    return [sys.executable, "-m", "apitask_auth.cli", "serve", "--dev"]


@contextlib.contextmanager
def service(
    tmp: Path, mode: str, smtp_port: int, database_url: str | None = None, **extra: str
) -> Iterator[str]:
    """An ``apitask-auth serve`` process in ``mode`` (see MODES); yields its base URL.

    Its database is a new SQLite file in ``tmp`` unless ``database_url`` names another.
    """
    with service_process(tmp, mode, smtp_port, database_url, extra=extra) as (url, _proc):
        yield url


@contextlib.contextmanager
def service_process(
    tmp: Path,
    mode: str,
    smtp_port: int,
    database_url: str | None = None,
    command: list[str] | None = None,
    extra: dict[str, str] | None = None,
    log: list[str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """:func:`service`, yielding the process too (for its CPU time), run by ``command``
    (default :func:`service_command`), with ``extra`` environment variables; its
    stderr lines are added to ``log`` when it has stopped."""
    port = free_port()
    mode, _, matching = mode.partition("+")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOTRUE_")}
    env.update(
        {
            "PORT": str(port),
            "API_EXTERNAL_URL": f"http://127.0.0.1:{port}",
            "GOTRUE_SITE_URL": "http://127.0.0.1:3000",
            "GOTRUE_JWT_SECRET": JWT_SECRET,
            "DATABASE_URL": database_url or f"sqlite:///{tmp / f'{mode}.db'}",
            "GOTRUE_SMTP_HOST": "127.0.0.1",
            "GOTRUE_SMTP_PORT": str(smtp_port),
            "GOTRUE_SMTP_ADMIN_EMAIL": "noreply@bench.example",
            "GOTRUE_MAILER_DELIVERY": mode,
            "GOTRUE_SECURITY_MATCH_RESPONSE_TIMES": "true" if matching else "false",
            # The benchmark measures timing, not limits: lift them, but keep the
            # global e-mail allowance in the path (autoconfirm off, the default)
            # so every mail pays for taking its unit, as in a default deployment.
            "GOTRUE_RATE_LIMIT_EMAIL_SENT": "1000000",
            "GOTRUE_SMTP_MAX_FREQUENCY": "1us",  # "1ns" rounds to 0, which means a minute
            **(extra or {}),
        }
    )
    proc = subprocess.Popen(
        command or service_command(),
        cwd=tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    watcher = LineWatcher(proc.stderr)
    try:
        watcher.wait_for("Uvicorn running on", 60)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log is not None:
            log.extend(watcher.lines)


def admin_headers() -> dict[str, str]:
    key = jwt.encode({"role": "service_role"}, JWT_SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {key}", "apikey": key}


def create_users(client: httpx.Client, n: int, domain: str = "bench.example") -> list[str]:
    """Create ``n`` confirmed users through the admin API; return their addresses."""
    emails = []
    for i in range(n):
        email = f"user{i}-{secrets.token_hex(3)}@{domain}"
        response = client.post(
            "/admin/users",
            json={"email": email, "password": secrets.token_urlsafe(12), "email_confirm": True},
            headers=admin_headers(),
        )
        response.raise_for_status()
        emails.append(email)
    return emails


def recover_latencies(
    client: httpx.Client,
    existing: list[str],
    unknown: list[str],
    warmup: int = 20,
    endpoint: str = "recover",
    extra: dict[str, str] | None = None,
) -> tuple[list[float], list[float]]:
    """Time ``POST /recover`` (or ``/<endpoint>``, with ``extra`` in the body) for each
    address, the two groups interleaved.

    Requests go one at a time (latency, not throughput), alternating an
    existing and an unknown address so that drift in the machine's load
    falls on both groups alike. The first ``warmup`` pairs are not kept.
    """
    times: dict[bool, list[float]] = {True: [], False: []}
    for i, (known, stranger) in enumerate(zip(existing, unknown, strict=True)):
        for is_known, email in ((True, known), (False, stranger)):
            start = time.perf_counter()
            response = client.post(f"/{endpoint}", json={"email": email, **(extra or {})})
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                raise RuntimeError(f"/{endpoint} answered {response.status_code}: {response.text}")
            if i >= warmup:
                times[is_known].append(elapsed * 1000)
    return times[True], times[False]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def wait_delivered(watcher: LineWatcher, count: int, timeout: float) -> int:
    """Wait until the slow server has received ``count`` mails in all; return the count."""
    deadline = time.monotonic() + timeout
    while watcher.last_count("received") < count and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            watcher.wait_for(f"received {count}", max(0.0, deadline - time.monotonic()))
    return watcher.last_count("received")


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of ``server_url``; dropped after."""
    name = f"apitask_bench_{secrets.token_hex(4)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE "{name}" WITH (FORCE)'))


def measure_recover(
    mode: str, n: int, delay: float, postgres: str | None = None
) -> tuple[list[float], list[float], int]:
    """One mode's run: latencies (ms) for existing and unknown addresses, mails delivered.

    The service's database is a fresh SQLite file, or a fresh database on the
    PostgreSQL server of ``postgres``. Fails loudly if the mail server did not
    get every mail: a mode that dropped mail would look fast for the wrong reason.
    """
    with (
        tempfile.TemporaryDirectory(prefix="apitask-bench-") as tmp,
        postgres_database(postgres) if postgres else contextlib.nullcontext() as database,
        slow_smtp(delay) as (smtp_port, smtp),
        service(Path(tmp), mode, smtp_port, database) as url,
        httpx.Client(base_url=url) as client,
    ):
        existing = create_users(client, n)
        unknown = [f"nobody{i}-{secrets.token_hex(3)}@bench.example" for i in range(n)]
        known_ms, unknown_ms = recover_latencies(client, existing, unknown)
        delivered = wait_delivered(smtp, n, timeout=n * delay + 120)
    if delivered != n:
        raise RuntimeError(f"{mode}: the mail server received {delivered} of {n} mails")
    return known_ms, unknown_ms, delivered

"""The ``apitask`` command line, and the parts a service's own command line reuses.

``apitask worker --app module:registry`` runs outbox jobs;
``apitask outbox list|stats|retry|purge|migrate`` inspects and repairs the
outbox. A service gives its own command the same worker options:
:func:`add_worker_arguments` on its parser, then :func:`run_worker_command`
with its registry (``apitask-auth worker`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import os
import socket
import sys
from typing import TYPE_CHECKING, Any, TextIO

import apitask

from ._duration import parse_duration
from .outbox import JobState, Outbox, OutboxError, TaskRegistry, open_outbox, run_worker

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._backoff import Backoff

__all__ = ["add_worker_arguments", "load_registry", "main", "run_worker_command"]

_DESCRIPTION = (
    "apitask worker --app module:registry runs outbox jobs; "
    "apitask outbox list|stats|retry|purge|migrate inspects and repairs the outbox."
)
URL_VARIABLES = ("APITASK_DATABASE_URL", "DATABASE_URL")


def _duration_option(text: str) -> float:
    """An option's duration in seconds (:func:`apitask.parse_duration`'s syntax).

    None of the options takes a negative one (a negative lease or age).

    Raises:
        argparse.ArgumentTypeError: not a duration, or negative.
    """
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (must not be negative)")
    return seconds


def load_registry(spec: str) -> TaskRegistry:
    """The registry at ``module:attribute`` (a TaskRegistry, or a callable returning one).

    Raises:
        ValueError: the spec cannot be imported or is not a registry.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected module:attribute, got {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load {spec!r}: {exc}") from exc
    if callable(target) and not isinstance(target, TaskRegistry):
        target = target()
    if not isinstance(target, TaskRegistry):
        raise ValueError(f"{spec!r} is {target!r}, not an apitask.outbox.TaskRegistry")
    return target


def _add_database_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="database URL: sqlite:///file.db or postgresql://... "
        f"(default: ${URL_VARIABLES[0]}, then ${URL_VARIABLES[1]})",
    )
    parser.add_argument("--schema", help="PostgreSQL schema of the outbox tables")


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``worker`` options (database, concurrency, timing) to ``parser``."""
    _add_database_arguments(parser)
    parser.add_argument("--concurrency", "-c", type=int, default=10, help="jobs run at once")
    parser.add_argument("--batch-size", type=int, help="jobs claimed per query")
    parser.add_argument(
        "--prefetch", type=int, help="jobs claimed ahead of free slots (default: batch size)"
    )
    parser.add_argument("--lease", type=_duration_option, default=30.0, help="claim lease (30s)")
    parser.add_argument("--poll-interval", type=_duration_option, default=1.0, help="idle poll")
    parser.add_argument("--max-attempts", type=int, default=5, help="attempts before dead")
    parser.add_argument("--job-timeout", type=_duration_option, help="limit on one attempt")
    parser.add_argument(
        "--retention", type=_duration_option, default=86400.0, help="keep succeeded jobs (1d)"
    )
    parser.add_argument(
        "--shutdown-timeout", type=_duration_option, default=30.0, help="drain deadline (30s)"
    )
    parser.add_argument(
        "--no-listen", action="store_true", help="poll only (behind PgBouncer in transaction mode)"
    )
    parser.add_argument("--no-migrate", action="store_true", help="do not migrate at start")
    parser.add_argument("--until-empty", action="store_true", help="exit when no job is due")


def _url(args: argparse.Namespace) -> str:
    url = args.url or next((os.environ[v] for v in URL_VARIABLES if os.environ.get(v)), None)
    if not url:
        raise SystemExit(f"no database: pass --url or set {' or '.join(URL_VARIABLES)}")
    return str(url)


def _open(args: argparse.Namespace, registry: TaskRegistry | None = None) -> Outbox:
    try:
        return open_outbox(_url(args), registry, schema=args.schema)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def run_worker_command(
    args: argparse.Namespace,
    registry: TaskRegistry,
    *,
    backoff: Backoff | None = None,
    cleanup: Callable[[], Awaitable[object]] | None = None,
) -> int:
    """Run the worker the parsed ``args`` describe (from :func:`add_worker_arguments`).

    Args:
        args: the parsed options.
        registry: rebuilds the stored tasks.
        backoff: retry timing (default: ``--max-attempts`` attempts).
        cleanup: awaited on the worker's event loop once the worker has
            stopped, whatever the outcome: close what the registry's tasks
            share there (an SMTP client's pooled connections).
    """
    from ._backoff import Backoff

    outbox = _open(args, registry)
    try:
        policy = backoff or Backoff(max_attempts=args.max_attempts)
    except ValueError as exc:
        raise SystemExit(f"--max-attempts: {exc}") from None

    async def main() -> None:
        try:
            async with outbox:
                await run_worker(
                    outbox,
                    migrate=not args.no_migrate,
                    until_empty=args.until_empty,
                    concurrency=args.concurrency,
                    batch_size=args.batch_size,
                    prefetch=args.prefetch,
                    lease=args.lease,
                    poll_interval=args.poll_interval,
                    backoff=policy,
                    job_timeout=args.job_timeout,
                    retention=args.retention,
                    shutdown_timeout=args.shutdown_timeout,
                    listen=not args.no_listen,
                )
        finally:
            if cleanup is not None:
                await cleanup()

    try:
        asyncio.run(main())
    except (OutboxError, ValueError) as exc:
        sys.stderr.write(f"apitask worker: {exc}\n")
        return 1
    return 0


# Former names of job states, still accepted by ``list --state`` with a warning
# for one release: "failed" became "retrying" (outbox migration 3).
_RENAMED_STATES = {"failed": JobState.RETRYING}


def _listed_state(name: str | None) -> JobState | None:
    if name is None:
        return None
    renamed = _RENAMED_STATES.get(name)
    if renamed is None:
        return JobState(name)
    sys.stderr.write(
        f"apitask outbox: warning: --state {name} is deprecated, use --state {renamed.value}\n"
    )
    return renamed


def _add_outbox_commands(parser: argparse.ArgumentParser) -> None:
    """Add ``list``, ``stats``, ``retry``, ``purge`` and ``migrate`` under ``parser``."""
    states = [s.value for s in JobState]
    commands = parser.add_subparsers(dest="outbox_command", required=True)
    listing = commands.add_parser("list", help="the newest jobs")
    # The deprecated names are accepted but not shown in the usage line.
    listing.add_argument(
        "--state", choices=[*states, *_RENAMED_STATES], metavar="{" + ",".join(states) + "}"
    )
    listing.add_argument("--limit", type=int, default=50)
    commands.add_parser("stats", help="job counts by type and state")
    retry = commands.add_parser("retry", help="queue dead jobs again")
    retry.add_argument("ids", nargs="*", type=int, help="job ids (default: none)")
    retry.add_argument("--all", action="store_true", help="every dead job")
    purge = commands.add_parser("purge", help="delete finished jobs")
    purge.add_argument("--state", choices=["succeeded", "dead"], default="succeeded")
    purge.add_argument("--older-than", type=_duration_option, default=0.0, help="e.g. 7d")
    commands.add_parser("migrate", help="create or upgrade the outbox tables")
    for command in commands.choices.values():
        _add_database_arguments(command)


def _operator() -> str:
    """Who runs this command, for a job's history (``retried`` events)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a container's uid)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()} with apitask outbox retry"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO) -> None:
    cells = [[str(c) for c in header], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _when(value: object) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


async def _outbox_command(outbox: Outbox, args: argparse.Namespace, out: TextIO) -> None:
    command = args.outbox_command
    if command == "migrate":
        applied = await outbox.migrate()
        print(f"applied migrations: {applied}" if applied else "schema up to date", file=out)
    elif command == "list":
        jobs = await outbox.list(_listed_state(args.state), args.limit)
        listed = [
            (
                j.id,
                j.type,
                j.state.value,
                j.attempts,
                _when(j.run_at),
                _when(j.created_at),
                j.request_id or "-",
                (j.last_error or "")[:60],
            )
            for j in jobs
        ]
        header = ("ID", "TYPE", "STATE", "ATTEMPTS", "RUN AT", "CREATED", "REQUEST", "LAST ERROR")
        _table(header, listed, out)
    elif command == "stats":
        stats = await outbox.stats()
        order = list(JobState)
        rows: list[list[object]] = [
            [type, *(by_state.get(s, 0) for s in order), sum(by_state.values())]
            for type, by_state in sorted(stats.counts.items())
        ]
        totals = [stats.total(s) for s in order]
        rows.append(["TOTAL", *totals, sum(totals)])
        _table(("TYPE", *(s.value.upper() for s in order), "ALL"), rows, out)
    elif command == "retry":
        if not args.ids and not args.all:
            raise SystemExit("retry: give job ids, or --all for every dead job")
        count = await outbox.retry(None if args.all else args.ids, by=_operator())
        print(f"queued {count} dead job(s) again", file=out)
    else:  # purge
        count = await outbox.purge(JobState(args.state), args.older_than)
        print(f"purged {count} {args.state} job(s)", file=out)


def _run_outbox_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the ``outbox`` sub-command the parsed ``args`` describe."""
    outbox = _open(args)

    async def main() -> None:
        async with outbox:
            await _outbox_command(outbox, args, out or sys.stdout)

    try:
        asyncio.run(main())
    except OutboxError as exc:
        sys.stderr.write(f"apitask outbox: {exc}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``apitask`` command and return its exit status."""
    parser = argparse.ArgumentParser(prog="apitask", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=apitask.__version__)
    commands = parser.add_subparsers(dest="command")
    worker = commands.add_parser("worker", help="run outbox jobs until SIGTERM")
    worker.add_argument(
        "--app",
        required=True,
        help="module:attribute of the TaskRegistry (or a function making it)",
    )
    add_worker_arguments(worker)
    outbox = commands.add_parser("outbox", help="inspect and repair the outbox")
    _add_outbox_commands(outbox)
    args = parser.parse_args(argv)

    if args.command == "worker":
        try:
            registry = load_registry(args.app)
        except ValueError as exc:
            parser.error(f"--app: {exc}")
        return run_worker_command(args, registry)
    if args.command == "outbox":
        return _run_outbox_command(args)
    parser.print_help(sys.stderr)
    return 2

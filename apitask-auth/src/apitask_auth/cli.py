"""The ``apitask-auth`` command line: ``serve``, ``migrate``, ``worker``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TYPE_CHECKING

import uvicorn

from . import __version__
from .app import create_app
from .config import ConfigError, Settings, load_settings
from .db import create_engine, migrate

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


async def _migrate(settings: Settings) -> list[int]:
    engine = create_engine(settings.database_url)
    try:
        return await migrate(engine)
    finally:
        await engine.dispose()


def _config_error(exc: ConfigError) -> int:
    print(f"apitask-auth: configuration error: {exc}", file=sys.stderr)  # noqa: T201
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``apitask-auth`` command and return its exit status."""
    parser = argparse.ArgumentParser(prog="apitask-auth")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument(
        "--dev",
        action="store_true",
        help="dev mode: local defaults, public dev JWT secret, migrations applied at start",
    )
    serve.add_argument("--host", default=None, help="listen host (default GOTRUE_API_HOST)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default PORT)")
    migrate_cmd = commands.add_parser("migrate", help="apply database migrations")
    migrate_cmd.add_argument("--dev", action="store_true", help="use dev-mode defaults")
    worker = commands.add_parser("worker", help="run outbox workers (outbox delivery)")
    worker.add_argument("--dev", action="store_true", help="use dev-mode defaults")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        settings = load_settings(dev=args.dev)
    except ConfigError as exc:
        return _config_error(exc)

    if args.command == "migrate":
        applied = asyncio.run(_migrate(settings))
        print(f"applied migrations: {applied or 'none (schema is current)'}")  # noqa: T201
        return 0
    if args.command == "worker":
        print(  # noqa: T201
            "apitask-auth worker: outbox delivery is not available in this build yet",
            file=sys.stderr,
        )
        return 2
    try:
        app = create_app(settings)
    except ConfigError as exc:
        return _config_error(exc)
    uvicorn.run(
        app,
        host=args.host or settings.api_host,
        port=args.port or settings.port,
        log_level="info",
        timeout_graceful_shutdown=int(settings.worker_shutdown_duration.total_seconds()) or None,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

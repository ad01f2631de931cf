"""The ``apitask-auth`` command line: ``serve``, ``migrate``, ``worker``, ``keys``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
from typing import TYPE_CHECKING

import asyncpg
import uvicorn
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from apitask.cli import add_worker_arguments, run_worker_command
from apitask.logs import JSONFormatter, RequestIdFilter
from apitask.outbox import OutboxError
from apitask_auth import __version__
from apitask_auth.accounts.addresses import DuplicateAddressesError
from apitask_auth.accounts.jwt_keys import ALGORITHMS, generate_jwk
from apitask_auth.app import create_app
from apitask_auth.config import ConfigError, Settings, load_settings
from apitask_auth.delivery.mail_chain import aclose, mail_registry, transport_for
from apitask_auth.delivery.send_hooks import register_send_hooks
from apitask_auth.delivery.sms.provider import provider_for
from apitask_auth.delivery.sms.task import SmsTask
from apitask_auth.http.access_log import redact_access_log
from apitask_auth.http.server import HeadLimitedHttpToolsProtocol
from apitask_auth.storage.db import create_engine
from apitask_auth.storage.migrations import migrate_all, schema_status

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


async def _migrate(settings: Settings) -> dict[str, list[int]]:
    engine = create_engine(settings.database_url)
    try:
        return await migrate_all(engine, settings.database_url)
    finally:
        await engine.dispose()


async def _schema_status(settings: Settings) -> dict[str, tuple[int, int]]:
    engine = create_engine(settings.database_url)
    try:
        return await schema_status(engine, settings.database_url)
    finally:
        await engine.dispose()


# What reaching a database that is down, refuses us, or is not there can raise.
_DATABASE_ERRORS = (OSError, SQLAlchemyError, asyncpg.PostgresError, OutboxError, sqlite3.Error)


def _database_error(exc: BaseException) -> int:
    """One line naming DATABASE_URL and the driver's reason (never the URL: it may
    carry the password), instead of a traceback."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    reason = (str(cause).strip().splitlines() or [""])[0]
    kind = type(cause).__name__
    print(  # noqa: T201
        f"apitask-auth: DATABASE_URL: cannot use the database ({kind}: {reason})",
        file=sys.stderr,
    )
    return 1


def _not_migrated(status: dict[str, tuple[int, int]]) -> str | None:
    behind = [
        f"{schema} schema at version {applied} of {latest}"
        for schema, (applied, latest) in status.items()
        if applied < latest
    ]
    if not behind:
        return None
    return (
        f"apitask-auth: the database at DATABASE_URL is not migrated ({', '.join(behind)}): "
        "run `apitask-auth migrate` first"
    )


# GOTRUE_LOG_LEVEL takes logrus's names; fatal and panic are critical here.
_LEVELS = {"warn": logging.WARNING, "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


def log_level(settings: Settings) -> int:
    """The ``logging`` level ``GOTRUE_LOG_LEVEL`` names."""
    name = settings.log_level
    return _LEVELS.get(name) or logging.getLevelNamesMapping()[name.upper()]


def log_handler(settings: Settings) -> logging.Handler:
    """A stderr handler: JSON lines (``GOTRUE_LOG_FORMAT=json``, the default, as GoTrue)
    or text, each record with the id of the request it was logged for."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RequestIdFilter())
    return handler


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
    worker = commands.add_parser(
        "worker",
        help="run an outbox worker: send the mail and texts queued in outbox mode",
        description="Send the mail and texts that `serve` queued in the outbox (any number "
        "of these, on any machine that reaches the database). The database URL defaults to "
        "DATABASE_URL; mail goes to GOTRUE_SMTP_HOST, texts to GOTRUE_SMS_PROVIDER.",
    )
    worker.add_argument("--dev", action="store_true", help="use dev-mode defaults")
    add_worker_arguments(worker)
    keys = commands.add_parser("keys", help="JWT signing keys (GOTRUE_JWT_KEYS)")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    generate = keys_commands.add_parser(
        "generate",
        help="print a new key set with one signing key, for GOTRUE_JWT_KEYS",
        description="Print a JSON array holding one new private JWK (a random kid, "
        'key_ops ["sign", "verify"]): the value of GOTRUE_JWT_KEYS. To rotate, add '
        'the new key to the old set, move "sign" to it once clients have fetched '
        "/.well-known/jwks.json (they cache it for 10 minutes), drop the old key "
        "when its last tokens have expired (GOTRUE_JWT_EXP).",
    )
    asymmetric = [alg for alg, kty in ALGORITHMS.items() if kty != "oct"]
    generate.add_argument("--alg", choices=asymmetric, default="ES256", help="default ES256")
    args = parser.parse_args(argv)
    if args.command == "keys":  # needs no configuration: a key is made before there is one
        print(json.dumps([generate_jwk(args.alg)]))  # noqa: T201
        return 0
    try:
        # --port wins over PORT, and dev mode's default URLs follow it.
        port = getattr(args, "port", None)
        settings = load_settings(dev=args.dev, **({"port": port} if port else {}))
    except ConfigError as exc:
        return _config_error(exc)
    # A no-op when logging is set up already (an embedding program, a test run).
    logging.basicConfig(level=log_level(settings), handlers=[log_handler(settings)])
    # aiosmtpd (the dev inbox) logs every SMTP command at INFO; its warnings still show.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # uvicorn's access lines carry query strings: /verify?token=... must not be logged.
    redact_access_log()

    if args.command == "migrate":
        try:
            applied = asyncio.run(_migrate(settings))
        except DuplicateAddressesError as exc:  # existing rows break a new rule
            print(f"apitask-auth: {exc}", file=sys.stderr)  # noqa: T201
            return 1
        except _DATABASE_ERRORS as exc:
            return _database_error(exc)
        for schema, versions in applied.items():
            print(  # noqa: T201
                f"{schema}: applied migrations: {versions or 'none (schema is current)'}"
            )
        return 0
    if args.command == "worker":
        if not settings.smtp_host and settings.dev:
            # The dev inbox lives inside `serve`, whose own outbox worker sends to it;
            # a worker here would only have the no-op client and drop the mail.
            return _config_error(
                ConfigError(
                    "GOTRUE_SMTP_HOST: required for `apitask-auth worker --dev` (the dev "
                    "inbox is served by `serve --dev`, whose in-process worker sends to it)"
                )
            )
        args.url = args.url or settings.database.url
        transport = transport_for(settings)
        registry = mail_registry(transport)
        # Stored texts too, through the configured provider (without one the
        # service queues none: its texter refuses, or texts the dev inbox).
        provider = provider_for(settings)
        if provider is not None:
            registry.register_prefix("sms.", SmsTask.factory(provider))
        # And the calls to the send hooks, signed by clients that hold their secrets.
        hooks = register_send_hooks(settings, registry)

        async def cleanup() -> None:
            # The clients' pooled connections live on the worker's loop.
            await aclose(transport)
            await aclose(provider)
            for hook in hooks:
                await hook.aclose()

        return run_worker_command(args, registry, cleanup=cleanup)
    try:
        status = asyncio.run(_schema_status(settings))
    except _DATABASE_ERRORS as exc:
        return _database_error(exc)
    # GoTrue's `serve` does not migrate (its bare command does): neither do we,
    # but we refuse to answer 500s on a schema that is behind. Dev mode migrates
    # in the lifespan.
    problem = None if settings.dev else _not_migrated(status)
    if problem is not None:
        print(problem, file=sys.stderr)  # noqa: T201
        return 1
    try:
        app = create_app(settings)
    except ConfigError as exc:
        return _config_error(exc)
    uvicorn.run(
        app,
        host=args.host or settings.api_host,
        port=settings.port,
        # uvicorn's loggers propagate to the root handler set up above.
        log_config=None,
        log_level=log_level(settings),
        http=HeadLimitedHttpToolsProtocol,  # 431 past the head limit (limits.py)
        timeout_graceful_shutdown=int(settings.worker_shutdown_duration.total_seconds()) or None,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``apitask-auth`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

import uvicorn

from . import __version__
from .app import create_app

if TYPE_CHECKING:
    from collections.abc import Sequence


def _port() -> int:
    raw = os.environ.get("PORT", "9999")
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"PORT: expected a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise SystemExit(f"PORT: expected a port number from 1 to 65535, got {port}")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``apitask-auth`` command and return its exit status."""
    parser = argparse.ArgumentParser(prog="apitask-auth")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--dev", action="store_true", help="dev mode: SQLite file, dev inbox")
    serve.add_argument("--host", default=os.environ.get("GOTRUE_API_HOST") or "127.0.0.1")
    args = parser.parse_args(argv)

    if args.command == "serve":
        uvicorn.run(create_app(), host=args.host, port=_port(), log_level="info")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``apitask`` command line (``python -m apitask``).

``apitask worker --app module:registry`` runs outbox jobs;
``apitask outbox list|stats|retry|purge|migrate`` inspects and repairs the outbox.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import apitask

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``apitask`` command and return its exit status."""
    from apitask.outbox import _cli

    parser = argparse.ArgumentParser(prog="apitask", description=__doc__)
    parser.add_argument("--version", action="version", version=apitask.__version__)
    commands = parser.add_subparsers(dest="command")
    worker = commands.add_parser("worker", help="run outbox jobs until SIGTERM")
    worker.add_argument(
        "--app",
        required=True,
        help="module:attribute of the TaskRegistry (or a function making it)",
    )
    _cli.add_worker_arguments(worker)
    outbox = commands.add_parser("outbox", help="inspect and repair the outbox")
    _cli.add_outbox_commands(outbox)
    args = parser.parse_args(argv)

    if args.command == "worker":
        try:
            registry = _cli.load_registry(args.app)
        except ValueError as exc:
            parser.error(f"--app: {exc}")
        return _cli.run_worker_command(args, registry)
    if args.command == "outbox":
        return _cli.run_outbox_command(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover - the console script calls main()
    sys.exit(main())

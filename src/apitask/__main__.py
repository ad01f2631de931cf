"""The ``apitask`` command line (``python -m apitask``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import apitask

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``apitask`` command and return its exit status."""
    parser = argparse.ArgumentParser(prog="apitask", description=__doc__)
    parser.add_argument("--version", action="version", version=apitask.__version__)
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover - the console script calls main()
    sys.exit(main())

"""``python -m apitask``: the ``apitask`` command line (see :mod:`apitask.cli`)."""

from __future__ import annotations

import sys

from apitask.cli import main

__all__ = ["main"]  # the console script's entry point (pyproject.toml)

if __name__ == "__main__":  # pragma: no cover - the console script calls main()
    sys.exit(main())

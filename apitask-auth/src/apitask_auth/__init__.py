"""apitask-auth: a GoTrue-compatible auth service for the e-mail flows, built on apitask."""

from __future__ import annotations

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]

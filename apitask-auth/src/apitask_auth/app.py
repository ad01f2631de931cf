"""The ASGI application."""

from __future__ import annotations

from fastapi import FastAPI

from . import __version__

__all__ = ["create_app"]


def create_app() -> FastAPI:
    """Build the service's ASGI app."""
    app = FastAPI(title="apitask-auth", version=__version__)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {
            "version": __version__,
            "name": "GoTrue",
            "description": "GoTrue is a user registration and authentication API",
        }

    return app

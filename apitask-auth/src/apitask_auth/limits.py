"""The 1 MiB request-body limit (§1.1): over it, 413 ``request_entity_too_large``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import BodyTooLargeError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_BODY_BYTES", "BodyLimitMiddleware"]

MAX_BODY_BYTES = 1 << 20


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes``: at once by Content-Length, else while reading.

    A body that grows past the limit raises :class:`BodyTooLargeError` out of
    ``receive``; FastAPI passes HTTP exceptions through its body parsing, and the
    error handlers answer 413 in GoTrue's format.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    receive = self._refuse
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLargeError
            return message

        await self.app(scope, limited, send)

    @staticmethod
    async def _refuse() -> Message:
        raise BodyTooLargeError

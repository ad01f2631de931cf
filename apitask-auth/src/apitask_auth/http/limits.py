"""Request size limits.

* The body: 1 MiB (§1.1); over it, 413 ``request_entity_too_large``.
* The head (request target plus header names and values): 32 KiB; over
  it, 431. Go's server, in front of GoTrue, allows 1 MiB; 32 KiB holds any
  real client's headers (a JWT, cookies, supabase-js's headers) many times
  over, while a server that buffers 1 MiB per connection hands an attacker
  memory cheaply. ``apitask-auth serve`` enforces it while the head is still
  arriving (:mod:`apitask_auth.http.server`); :class:`HeadLimitMiddleware`
  enforces it under any other ASGI server.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

from apitask_auth.errors import APIError, BodyTooLargeError, ErrorCode, error_response

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "BodyLimitMiddleware",
    "HeadLimitMiddleware",
    "head_size",
    "head_too_large",
]

MAX_BODY_BYTES = 1 << 20
MAX_HEAD_BYTES = 32 << 10


def head_size(target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> int:
    """What the head limit counts: the request target and each header's name and value."""
    return len(target) + sum(len(name) + len(value) for name, value in headers)


def head_too_large() -> APIError:
    """The 431 for a head over :data:`MAX_HEAD_BYTES`."""
    return APIError(
        431, ErrorCode.REQUEST_HEADER_FIELDS_TOO_LARGE, "Request header fields too large"
    )


class HeadLimitMiddleware:
    """Answer 431 to a request whose head is over ``max_bytes`` (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_HEAD_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            target = scope.get("raw_path") or scope["path"].encode()
            if scope["query_string"]:
                target += b"?" + scope["query_string"]
            if head_size(target, scope["headers"]) > self.max_bytes:
                response = error_response(Request(scope), head_too_large())
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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

"""The HTTP protocol ``apitask-auth serve`` runs: uvicorn's, with a cap on the request head.

uvicorn's httptools protocol (the one it picks when httptools is installed,
as ``uvicorn[standard]`` does) sets no limit on the request line and headers:
an 8 MiB header is buffered whole and handed to the app. (Its h11 protocol
has ``h11_max_incomplete_event_size``, 16 KiB by default, but answers 400, not
431.) This subclass counts the head while it arrives and, past
:data:`~apitask_auth.http.limits.MAX_HEAD_BYTES`, answers 431 and closes the
connection without reading the rest.

Two counts, because httptools reports a header only once it is complete:

* exact: the request target and each complete header (:func:`head_size`'s
  measure), checked as the parser reports them;
* a guard on memory: the bytes of every chunk that arrives while a head is
  still incomplete. The chunk in which a request begins is not counted
  (part of it may belong to the previous request), so a head is refused at
  most one chunk past the limit, and a legitimate one never.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from apitask_auth.http.limits import MAX_HEAD_BYTES, head_too_large

__all__ = ["LINGER_SECONDS", "HeadLimitedHttpToolsProtocol"]

logger = logging.getLogger("apitask_auth")

LINGER_SECONDS = 2.0
"""How long a refused connection is kept open, dropping input, before it is closed."""


class _HeadTooLargeError(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; a request head over ``max_head_bytes`` gets a 431."""

    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between requests, the next bytes are a head
        self._head_bytes = 0  # exact: target and complete headers
        self._head_chunks = 0  # memory guard: whole chunks while the head is incomplete
        self._refused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._head_chunks = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            raise _HeadTooLargeError  # httptools stops; data_received answers

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a 431: what the client still sends is dropped
        # A head under way before this chunk (its target already counted):
        # every byte of the chunk up to the end of the head belongs to it.
        whole_chunk_in_head = self._in_head and self._head_bytes > 0
        super().data_received(data)
        if not (self._in_head and whole_chunk_in_head):
            return
        self._head_chunks += len(data)
        if self._head_chunks > self.max_head_bytes:
            self._refuse()  # once: a head refused by its exact count is not refused again

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with a 400; a head over the limit
        # (the callback error above) gets its own status.
        if self._head_bytes > self.max_head_bytes:
            self._refuse()
            return
        super().send_400_response(msg)

    def _refuse(self) -> None:
        if self._refused:
            return
        self._refused = True
        logger.warning("request head over %d bytes: answered 431", self.max_head_bytes)
        error = head_too_large()
        body = json.dumps({"code": error.status, "error_code": error.code, "msg": error.message})
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n".encode()
            + b"connection: close\r\n\r\n"
            + body.encode()
        )
        # Closing now, with the client's data unread, makes the kernel answer
        # with a reset that can overtake the 431. Linger instead, as servers
        # do: end our side, drop what arrives, close when the client does or
        # after LINGER_SECONDS.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

"""A real HTTP server for template URLs: it serves what a test sets, counts
requests, and can hold an answer until the test releases it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass
class TemplateServer:
    """Pages by path: (status, body). Paths in ``held`` wait for ``release``."""

    base: str = ""
    pages: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    seen: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, body: str | bytes, status: int = 200) -> str:
        self.pages[path] = (status, body.encode() if isinstance(body, str) else body)
        return self.url(path)

    def count(self, path: str) -> int:
        return self.requests.count(path)


def _handler(state: TemplateServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            state.seen.set()
            if self.path in state.held:
                state.release.wait(30)
            status, body = state.pages.get(self.path, (404, b"not found"))
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 204:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: tests read ``requests`` instead."""

    return Handler


@pytest.fixture
def template_server() -> Iterator[TemplateServer]:
    """A threaded HTTP server on 127.0.0.1 (a free port), stopped after the test."""
    state = TemplateServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval only makes shutdown() return sooner.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join()

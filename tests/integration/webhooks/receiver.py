"""A real webhook receiver for tests: an HTTP server in a thread that checks signatures.

It verifies every POST with the ``standardwebhooks`` package (the published
reference implementation, independent of ours), records what it accepted,
and answers as its script says: 2xx, an error status with a message, a
stall past the sender's timeout, or a dropped connection.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import standardwebhooks

if TYPE_CHECKING:
    from collections.abc import Callable

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes, as the spec's example
OTHER_SECRET = "whsec_" + "c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="


@dataclass(frozen=True)
class Answer:
    """What the receiver does with one request."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stall: bool = False  # hold the request until the receiver stops (a timeout)
    drop: bool = False  # close the connection without answering


OK = Answer(204)


@dataclass(frozen=True)
class Received:
    """One request the receiver got, with its verdict."""

    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """The server; use as a context manager (``with Receiver() as r: r.url``)."""

    def __init__(
        self,
        *,
        secret: str = SECRET,
        script: Callable[[int, Received], Answer] | None = None,
    ) -> None:
        self.verifier = standardwebhooks.Webhook(secret)
        self.script = script or (lambda n, request: OK)
        self.requests: list[Received] = []
        # Answered 2xx, by webhook id: what a de-duplicating receiver keeps.
        self.accepted: dict[str, list[Received]] = {}
        self.changed = threading.Condition()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    receiver.verifier.verify(body, headers)
                    verified = True
                except standardwebhooks.webhooks.WebhookVerificationError:
                    verified = False
                request = Received(headers, body, verified)
                with receiver.changed:
                    receiver.requests.append(request)
                    index = len(receiver.requests) - 1
                    receiver.changed.notify_all()
                answer = receiver.script(index, request) if verified else Answer(401, b"bad sig")
                if answer.stall:
                    receiver.release.wait()
                    self.close_connection = True  # then hang up, unanswered
                    return
                if answer.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if 200 <= answer.status < 300:
                    with receiver.changed:
                        receiver.accepted.setdefault(request.webhook_id, []).append(request)
                        receiver.changed.notify_all()
                self.send_response(answer.status)
                # One request per connection: the handler's thread ends with its answer,
                # so stopping the receiver never waits on an idle keep-alive connection.
                self.close_connection = True
                self.send_header("connection", "close")
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False
        self.server.block_on_close = True  # stop() joins the handlers: no stray sockets
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    async def __aenter__(self) -> Receiver:
        # Starting and stopping block (a thread start, a join): never on the event loop.
        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.__exit__)

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """Block until ``count`` requests arrived (call through asyncio.to_thread)."""
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{len(self.requests)} of {count} requests arrived")
            return list(self.requests)

    def wait_accepted(self, count: int, timeout: float = 30) -> dict[str, list[Received]]:
        """Block until ``count`` distinct webhook ids were answered 2xx."""
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.accepted) >= count, timeout):
                raise TimeoutError(f"{len(self.accepted)} of {count} webhooks accepted")
            return dict(self.accepted)

"""A local HTTP server speaking Twilio's Messages API, for the SMS tests.

Real HTTP over a real socket (h11 on asyncio), so the service's
``httpx.AsyncClient`` does everything it does against Twilio: connection
pooling, Basic auth, the form body, timeouts. It answers
``POST /2010-04-01/Accounts/{sid}/Messages.json`` as Twilio does: 201 and the
message resource, or Twilio's error object (``code``, ``message``,
``more_info``, ``status``). A wrong account or token gets 401 (Twilio's
20003).

What the next answers are is scripted (:meth:`TwilioServer.script`): ``201``,
``429``, ``500``, ``400``, ``"failed"`` (201 with a failed status),
``"drop"`` (the connection closed without an answer) or ``"hold"`` (no
answer until :attr:`release` is set). ``flaky`` fails that share of the
unscripted attempts (seeded) with 500, 429 or a drop; ``delay`` answers after
that many seconds. Only a 201 counts as delivered (:attr:`delivered`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import secrets
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import h11

if TYPE_CHECKING:
    from collections.abc import Iterator

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-token"
SENDER = "MG" + "fedcba9876543210" * 2


@dataclass
class Attempt:
    """One request the server read, and what it answered."""

    path: str
    form: dict[str, str]
    authorization: str
    answer: str = ""


@dataclass
class TwilioServer:
    """See the module docstring. ``async with TwilioServer() as server: server.url``."""

    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    flaky: float = 0.0
    seed: int = 8
    delay: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    delivered: list[dict[str, str]] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _script: deque[str | int] = field(default_factory=deque)
    _server: asyncio.Server | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _rng: random.Random = field(init=False)
    _loop: asyncio.AbstractEventLoop | None = None
    url: str = ""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def __aenter__(self) -> TwilioServer:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._server.wait_closed()

    def script(self, *answers: str | int) -> None:
        """The next answers, in order (then 201s, or the flaky share of failures)."""
        self._script.extend(answers)

    def texts_to(self, number: str) -> list[str]:
        """Bodies delivered to ``number`` (``+`` and digits, as Twilio gets it)."""
        return [form.get("Body", "") for form in self.delivered if form["To"].endswith(number)]

    async def wait_delivered(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` messages in all were delivered."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.delivered) >= count)

    async def wait_texts_to(self, number: str, count: int, timeout: float = 30.0) -> list[str]:
        """Until ``count`` messages were delivered to ``number``; their bodies, oldest first."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.texts_to(number)) >= count)
        return self.texts_to(number)

    def texts_to_threadsafe(self, number: str, count: int, timeout: float = 30.0) -> list[str]:
        """:meth:`wait_texts_to` from another thread (a server of :func:`twilio_in_thread`)."""
        assert self._loop is not None, "the server is not running"
        waiting = self.wait_texts_to(number, count, timeout)
        return asyncio.run_coroutine_threadsafe(waiting, self._loop).result(timeout + 5)

    def settings(self, **more: Any) -> dict[str, Any]:
        """Service settings that send through this server."""
        return {
            "sms_provider": "twilio",
            "sms_twilio_account_sid": self.account_sid,
            "sms_twilio_auth_token": self.auth_token,
            "sms_twilio_message_service_sid": SENDER,
            "sms_twilio_api_base_url": self.url,
            **more,
        }

    def _next_answer(self) -> str | int:
        if self._script:
            return self._script.popleft()
        if self.flaky and self._rng.random() < self.flaky:
            failures: list[str | int] = [500, 429, "drop"]
            return self._rng.choice(failures)
        return 201

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await _read_request(conn, reader)
                if request is None:
                    return
                keep = await self._answer(conn, writer, request, body)
                if not keep or conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
    ) -> bool:
        headers = {name.decode().lower(): value.decode() for name, value in request.headers}
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        attempt = Attempt(request.target.decode(), form, headers.get("authorization", ""))
        self.attempts.append(attempt)
        self.arrived.set()
        expected = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        if attempt.path != expected or request.method != b"POST":
            attempt.answer = "404"
            await _send(
                conn, writer, 404, _error(20404, "The requested resource was not found", 404)
            )
            return True
        if not self._authorized(attempt.authorization):
            attempt.answer = "401"
            await _send(conn, writer, 401, _error(20003, "Authenticate", 401))
            return True
        answer = self._next_answer()
        attempt.answer = str(answer)
        if answer == "hold":
            await self.release.wait()
            answer = 201
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow provider, not an ordering device
        if answer == "drop":
            self.failed["drop"] += 1
            return False
        if answer == 201 or answer == "failed":
            status = "failed" if answer == "failed" else "queued"
            resource = {
                "sid": "SM" + secrets.token_hex(16),
                "status": status,
                "to": form.get("To"),
                "from": form.get("From"),
                "body": form.get("Body"),
                "error_code": 30007 if status == "failed" else None,
                "error_message": "Message filtered" if status == "failed" else None,
            }
            if status == "queued":
                self.delivered.append(form)
                async with self._changed:
                    self._changed.notify_all()
            await _send(conn, writer, 201, resource)
            return True
        code = int(answer)
        self.failed[str(code)] += 1
        if code == 429:
            payload = _error(20429, "Too Many Requests", 429)
            await _send(conn, writer, 429, payload, extra=[("Retry-After", "0")])
        elif code >= 500:
            await _send(conn, writer, code, _error(20500, "Internal Server Error", code))
        else:
            payload = _error(
                21211, f"The 'To' number {form.get('To')} is not a valid phone number.", code
            )
            await _send(conn, writer, code, payload)
        return True

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return secrets.compare_digest(f"{user}:{password}", f"{self.account_sid}:{self.auth_token}")


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            if not data and request is None:
                return None, b""
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return request, body
        elif isinstance(event, h11.ConnectionClosed):
            return None, b""


async def _send(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    status: int,
    payload: dict[str, Any],
    *,
    extra: list[tuple[str, str]] | None = None,
) -> None:
    data = json.dumps(payload).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
        *(extra or []),
    ]
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
    writer.write(conn.send(h11.Data(data=data)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()


@contextlib.contextmanager
def twilio_in_thread(**options: Any) -> Iterator[TwilioServer]:
    """A :class:`TwilioServer` on its own loop in a thread (for code that runs its own loop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="twilio", daemon=True)
    thread.start()

    async def start() -> TwilioServer:
        return await TwilioServer(**options).__aenter__()

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

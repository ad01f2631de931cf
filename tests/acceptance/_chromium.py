"""Headless Chromium driven over the Chrome DevTools Protocol: the least machinery that works.

Debian's ``chromium`` (installed by scripts/install-browser) is started with a
fresh profile and ``--remote-debugging-port=0``; it prints its websocket URL on
stderr. One websocket (the ``websockets`` package, already in the lock for
uvicorn) carries every command; pages are flat sessions on it. No WebDriver,
no Playwright, no browser download.

Tests take the binary from :func:`require_chromium` in a sync fixture (skip
locally, fail in CI when the browser is missing; checked off the event loop)
and call :func:`launch`, then ``Page.goto / click / evaluate / screenshot``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CHROMIUM = Path(os.environ.get("APITASK_CHROMIUM", "/usr/bin/chromium"))
# Per the machine doc: without the background-networking flags Chromium keeps
# dialling Google's hosts, which this closed network refuses.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,800",
    "--remote-debugging-port=0",
)
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")
TIMEOUT = 30.0


def require_chromium() -> Path:
    """The Chromium binary, or skip (locally) / fail (CI: APITASK_REQUIRE_BROWSER=1)."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    problem = f"{CHROMIUM} not found: run scripts/install-browser (Debian's chromium package)"
    if os.environ.get("APITASK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{problem}; CI requires it (APITASK_REQUIRE_BROWSER=1)")
    pytest.skip(problem)


class CDPError(RuntimeError):
    """Chromium answered a command with an error, or a page did not do what was asked."""


class _Connection:
    """One websocket to the browser: numbered commands, futures for replies and events."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[tuple[str, str | None, asyncio.Future[dict[str, Any]]]] = []
        self._reader = asyncio.create_task(self._read())

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        number = next(self._ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[number] = reply
        command: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        await self._socket.send(json.dumps(command))
        async with asyncio.timeout(TIMEOUT):
            answer = await reply
        if "error" in answer:
            raise CDPError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def expect(self, method: str, session: str | None) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``method`` event; register it before causing the event."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._listeners.append((method, session, future))
        return future

    async def _read(self) -> None:
        try:
            async for frame in self._socket:
                self._dispatch(json.loads(frame))
        finally:
            # The browser went away: nothing pending will be answered.
            for reply in self._replies.values():
                if not reply.done():
                    reply.set_exception(CDPError("the browser closed the connection"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            reply = self._replies.pop(message["id"], None)
            if reply is not None and not reply.done():
                reply.set_result(message)
            return
        for listener in list(self._listeners):
            method, session, future = listener
            if message.get("method") == method and message.get("sessionId") == session:
                self._listeners.remove(listener)
                if not future.done():
                    future.set_result(message.get("params", {}))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._socket.close()


class Page:
    """One tab: navigate, click like a user, read the DOM, take screenshots."""

    def __init__(self, connection: _Connection, session: str) -> None:
        self._connection = connection
        self._session = session

    async def _send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self._connection.send(method, params, self._session)

    async def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        loaded = self._connection.expect("Page.loadEventFired", self._session)
        result = await self._send("Page.navigate", url=url)
        if result.get("errorText"):
            raise CDPError(f"navigating to {url}: {result['errorText']}")
        async with asyncio.timeout(TIMEOUT):
            await loaded

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = await self._send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CDPError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def click(self, selector: str) -> None:
        """Click the element's centre with the mouse and wait for the page that loads."""
        box = await self.evaluate(
            f"""(() => {{
                const element = document.querySelector({json.dumps(selector)});
                if (!element) return null;
                element.scrollIntoView({{block: "center"}});
                // The first line box: a link that wraps has no text at its union's centre.
                const r = element.getClientRects()[0] ?? element.getBoundingClientRect();
                return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
            }})()"""
        )
        if box is None:
            raise CDPError(f"no element matches {selector!r}")
        loaded = self._connection.expect("Page.loadEventFired", self._session)
        for kind in ("mousePressed", "mouseReleased"):
            await self._send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box["x"],
                y=box["y"],
                button="left",
                clickCount=1,
            )
        async with asyncio.timeout(TIMEOUT):
            await loaded

    async def url(self) -> str:
        """Where the page is now, fragment included."""
        return str(await self.evaluate("location.href"))

    async def text(self, selector: str = "body") -> str:
        """innerText of the first element matching ``selector``."""
        value = await self.evaluate(f"document.querySelector({json.dumps(selector)})?.innerText")
        return str(value or "")

    async def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport (also copied to $APITASK_SCREENSHOTS when set)."""
        shot = await self._send("Page.captureScreenshot", format="png")
        data = base64.b64decode(shot["data"])
        await asyncio.to_thread(path.write_bytes, data)
        keep = os.environ.get("APITASK_SCREENSHOTS")
        if keep:
            await asyncio.to_thread(_copy_to, path, Path(keep))
        return path


def _copy_to(path: Path, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, directory / path.name)


class Browser:
    """A running headless Chromium with one CDP connection."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    async def new_page(self) -> Page:
        """Open a blank tab and attach to it."""
        target = await self._connection.send("Target.createTarget", {"url": "about:blank"})
        attached = await self._connection.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self._connection, attached["sessionId"])
        await page._send("Page.enable")
        await page._send("Runtime.enable")
        return page


@asynccontextmanager
async def launch(binary: Path, profile: Path) -> AsyncIterator[Browser]:
    """Start Chromium ``binary`` with a fresh profile in ``profile``; close it on exit."""
    process = await asyncio.create_subprocess_exec(
        binary,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    drain: asyncio.Task[None] | None = None
    connection: _Connection | None = None
    try:
        seen: list[str] = []
        async with asyncio.timeout(TIMEOUT):
            while not (found := _LISTENING.search(seen[-1] if seen else "")):
                line = await process.stderr.readline()
                if not line:
                    raise CDPError("Chromium exited before listening:\n" + "".join(seen))
                seen.append(line.decode(errors="replace"))
        # Keep reading stderr so a chatty browser never blocks on a full pipe.
        drain = asyncio.create_task(_drain(process.stderr))
        socket = await connect(found.group(1), max_size=None, open_timeout=TIMEOUT)
        connection = _Connection(socket)
        yield Browser(connection)
    finally:
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.send("Browser.close")
            await connection.close()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass

"""HTTP routes of the dev inbox: the page and a JSON API for tests and tools.

Left out of the OpenAPI schema on purpose: they exist only in dev mode and are
not part of the GoTrue-compatible API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ._pages import BODY_CSP, PAGE_CSP, render_inbox

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._message import CaughtMessage
    from ._store import CaughtT, MessageStore
    from ._text import CaughtText

__all__ = ["build_router"]

MAX_WAIT_SECONDS = 30.0
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def build_router(
    store: MessageStore[CaughtMessage],
    texts: MessageStore[CaughtText],
    smtp_address: Callable[[], tuple[str, int] | None],
    *,
    prefix: str,
) -> APIRouter:
    """Routes under ``prefix`` that read and clear ``store`` (mail) and ``texts``."""
    router = APIRouter(prefix=prefix, include_in_schema=False)

    def find(message_id: str) -> CaughtMessage:
        message = store.get(message_id)
        if message is None:
            raise HTTPException(404, f"no message {message_id!r} in the dev inbox")
        return message

    @router.get("")
    async def inbox_page(
        to: Annotated[str | None, Query(max_length=320)] = None,
        id: Annotated[str | None, Query(max_length=64)] = None,
    ) -> HTMLResponse:
        to = to.strip() or None if to is not None else None
        messages = store.select(to=to)
        page = render_inbox(
            messages,
            selected=store.get(id) if id else None,
            prefix=prefix,
            smtp_address=smtp_address(),
            to_filter=to,
            total=len(store),
            capacity=store.max_messages,
            texts=texts.select(to=to),
        )
        headers = {
            **_NO_STORE,
            "Content-Security-Policy": PAGE_CSP,
            "Referrer-Policy": "no-referrer",
        }
        return HTMLResponse(page, headers=headers)

    @router.post("/clear")
    async def clear_from_page(request: Request) -> Response:
        # A form post from another site must not empty a developer's inbox.
        if request.headers.get("sec-fetch-site", "same-origin") == "cross-site":
            raise HTTPException(403, "cross-site request refused")
        store.clear()
        texts.clear()
        return RedirectResponse(prefix, status_code=303)

    @router.get("/messages")
    async def list_messages(
        to: Annotated[str | None, Query(max_length=320)] = None,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0,
        count: Annotated[int, Query(ge=1, le=10_000)] = 1,
    ) -> JSONResponse:
        """Messages newest first; ``to`` filters by recipient; ``wait`` long-polls
        up to that many seconds until at least ``count`` messages match."""
        found = await _select(store, to, wait, count)
        return _json([message.to_json() for message in found])

    @router.get("/texts")
    async def list_texts(
        to: Annotated[str | None, Query(max_length=32)] = None,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0,
        count: Annotated[int, Query(ge=1, le=10_000)] = 1,
    ) -> JSONResponse:
        """Text messages newest first, as ``/messages`` serves mail (``to``: the number)."""
        found = await _select(texts, to, wait, count)
        return _json([text.to_json() for text in found])

    @router.delete("/texts")
    async def clear_texts() -> JSONResponse:
        return _json({"deleted": texts.clear()})

    @router.delete("/messages")
    async def clear_messages() -> JSONResponse:
        return _json({"deleted": store.clear()})

    @router.get("/messages/{message_id}")
    async def get_message(message_id: str) -> JSONResponse:
        return _json(find(message_id).to_json())

    @router.get("/messages/{message_id}/html")
    async def get_message_html(message_id: str) -> HTMLResponse:
        message = find(message_id)
        if message.html is None:
            raise HTTPException(404, f"message {message_id!r} has no HTML part")
        headers = {
            **_NO_STORE,
            "Content-Security-Policy": BODY_CSP,
            "Referrer-Policy": "no-referrer",
        }
        return HTMLResponse(message.html, headers=headers)

    @router.get("/messages/{message_id}/raw")
    async def get_message_source(message_id: str) -> Response:
        raw = find(message_id).raw
        # text/plain so a browser shows the source instead of downloading it.
        return Response(raw, media_type="text/plain; charset=utf-8", headers=_NO_STORE)

    return router


async def _select(
    store: MessageStore[CaughtT], to: str | None, wait: float, count: int
) -> list[CaughtT]:
    def enough() -> list[CaughtT]:
        matching = store.select(to=to)
        return matching if len(matching) >= count else []

    if wait > 0:
        return await store.wait_for(enough, wait) or store.select(to=to)
    return store.select(to=to)


def _json(content: Any) -> JSONResponse:
    return JSONResponse(content, headers=_NO_STORE)

"""A tiny app with only the dev inbox, served by a real uvicorn in the browser test.

``/_test/smtp`` tells the test where to send mail; ``/landing`` stands in for a
confirmation link (303 to a page with a token fragment, as /verify does).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse

from apitask_auth.delivery.devinbox import DevInbox

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def create_app() -> FastAPI:
    """The inbox router plus two stand-in pages; the SMTP catcher runs in the lifespan."""
    inbox = DevInbox(max_messages=50)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inbox:
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(inbox.router)

    @app.get("/_test/smtp")
    async def smtp_address() -> dict[str, object]:
        assert inbox.address is not None
        return {"host": inbox.address[0], "port": inbox.address[1]}

    @app.get("/landing")
    async def landing(token: str) -> RedirectResponse:
        return RedirectResponse(f"/welcome#access_token={token}&type=signup", status_code=303)

    @app.get("/welcome")
    async def welcome() -> HTMLResponse:
        return HTMLResponse("<!DOCTYPE html><title>Welcome</title><h1>Welcome aboard</h1>")

    return app

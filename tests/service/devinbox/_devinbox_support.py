"""Shared pieces of the dev inbox tests: building mail and an HTTP client on the router."""

from __future__ import annotations

from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from apitask_auth.delivery.devinbox import DevInbox


def build_mail(
    to: str = "bob@example.com",
    subject: str = "Confirm your sign-up",
    *,
    text: str | None = "Follow https://app.example.com/verify?token=t1&type=signup to confirm.",
    html: str | None = '<p><a href="https://app.example.com/verify?token=t1&amp;type=signup">'
    "Confirm</a></p>",
    sender: str = "Apitask <noreply@example.com>",
) -> EmailMessage:
    """A message like the service sends: text and/or HTML alternatives."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = "<test.1@example.com>"
    message["Date"] = "Wed, 25 Nov 2026 06:00:00 +0000"
    if text is not None:
        message.set_content(text)
    if html is not None:
        if text is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    return message


@asynccontextmanager
async def inbox_client(inbox: DevInbox) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on a tiny FastAPI app that includes only the inbox router."""
    app = FastAPI()
    app.include_router(inbox.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client

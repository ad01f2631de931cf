"""The service as ``serve --dev`` builds it, with a texter that keeps its texts, for
the real client's phone tests under a real uvicorn (``--factory``).

The SMS chain is another part's (its own tests drive a provider); here the
texts stay in the process and ``/_test/texts?to=NUMBER`` hands them to the
test, as the dev inbox hands over mail. (The service tests' recording
texter lives in a package this process cannot import by that name.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apitask_auth.app import create_app as create_service
from apitask_auth.config import load_settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.delivery.texter import Channel, Purpose
    from apitask_auth.storage.rows import User


class KeptTexts:
    """A texter that keeps every text as {phone, otp, channel}, oldest first."""

    def __init__(self) -> None:
        self.texts: list[dict[str, str]] = []

    async def send(
        self,
        phone: str,
        otp: str,
        *,
        user: User,
        channel: Channel = "sms",
        purpose: Purpose = "otp",
        connection: AsyncConnection,
    ) -> None:
        """Keep the text."""
        self.texts.append({"phone": phone, "otp": otp, "channel": channel})

    async def aclose(self) -> None:
        """Nothing to finish."""


def create_app() -> FastAPI:
    """The dev service (settings from the environment) plus ``/_test/texts``."""
    texts = KeptTexts()
    app = create_service(load_settings(dev=True), texter=texts)

    @app.get("/_test/texts", include_in_schema=False)
    async def texts_to(to: str) -> list[dict[str, str]]:
        return [text for text in texts.texts if text["phone"] == to]

    return app

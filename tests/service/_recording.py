"""A recording mail client for the service tests (until apitask.mail.RecordingClient lands)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apitask.mail import Message


class RecordingClient:
    """Keeps every sent message; :meth:`wait_for` waits for one to an address."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._sent = asyncio.Condition()

    async def send(self, message: Message) -> None:
        async with self._sent:
            self.messages.append(message)
            self._sent.notify_all()

    async def wait_for(self, *, to: str, timeout: float = 5.0) -> Message:
        async with asyncio.timeout(timeout), self._sent:
            await self._sent.wait_for(lambda: any(m.to == to for m in self.messages))
        return [m for m in self.messages if m.to == to][-1]

"""A texter that records what it is asked to send, for the phone-flow and MFA tests.

It stands where the SMS chain stands (``create_app(texter=...)``): the flows'
side of the door is under test, not the delivery. It can be told to fail
(the provider's refusal, as an inline send reports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.delivery.texter import Channel, Purpose
    from apitask_auth.storage.rows import User


@dataclass(frozen=True)
class Text:
    """One send: the number (stored form), the code, and how it was asked for."""

    phone: str
    otp: str
    user_id: str
    channel: str
    purpose: str


@dataclass
class RecordingTexter:
    """Records every send; raises ``failure`` instead while it is set."""

    texts: list[Text] = field(default_factory=list)
    failure: Exception | None = None
    closed: bool = False

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
        """Record the text, or fail as told."""
        if self.failure is not None:
            raise self.failure
        self.texts.append(Text(phone, otp, user["id"], channel, purpose))

    async def aclose(self) -> None:
        """Nothing to finish."""
        self.closed = True

    def to(self, phone: str) -> list[Text]:
        """The texts sent to ``phone`` (stored form), oldest first."""
        return [text for text in self.texts if text.phone == phone]

    def code(self, phone: str) -> str:
        """The code of the newest text to ``phone``."""
        sent = self.to(phone)
        assert sent, f"no text to {phone}"
        return sent[-1].otp

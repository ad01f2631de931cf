"""A caught text message: what the SMS chain would have sent to a provider."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["CaughtText"]


@dataclass(frozen=True, slots=True)
class CaughtText:
    """One text the dev inbox received in place of an SMS provider.

    Attributes:
        to: the number, E.164 with its ``+``.
        text: the text, as the provider would have sent it.
        channel: ``"sms"`` or ``"whatsapp"``.
        id: inbox-assigned identifier.
        received_at: when it arrived (UTC).
    """

    to: str
    text: str
    channel: str = "sms"
    id: str = field(default_factory=lambda: f"sms-{uuid.uuid4().hex[:16]}")
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def recipients(self) -> set[str]:
        """The number, with and without its ``+`` (a filter may use either)."""
        return {self.to, self.to.removeprefix("+")}

    def to_json(self) -> dict[str, Any]:
        """The JSON shape served by ``/_dev/inbox/texts``."""
        return {
            "id": self.id,
            "kind": "sms",
            "received_at": self.received_at.isoformat(),
            "to": self.to,
            "channel": self.channel,
            "text": self.text,
        }

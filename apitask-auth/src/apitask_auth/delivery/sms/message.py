"""One text message, final: what the provider is asked to send, and what the outbox stores."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

from apitask_auth.delivery.texter import Channel, Purpose

if TYPE_CHECKING:
    from collections.abc import Mapping

    from apitask import JSONValue

__all__ = ["TextMessage"]

# E.164 without the "+", as GoTrue stores numbers (and as handlers pass them).
_NUMBER = re.compile(r"[1-9][0-9]{1,14}")
# A provider's limit is far below this; the cap keeps a stored payload small.
MAX_TEXT = 1600


@dataclass(frozen=True, slots=True)
class TextMessage:
    """A rendered text, ready to send as it is, now or from the outbox later.

    Attributes:
        to: the number, E.164 without the ``+``.
        text: the rendered text (the one-time code in it).
        channel: ``"sms"`` or ``"whatsapp"``.
        purpose: which template it was rendered from (``"otp"``, ``"mfa"``);
            the task's type (``sms.otp``) and the counters' key.
        code: the one-time code alone, kept only when the provider sends it
            apart from the text (a WhatsApp content template); else ``None``.
    """

    to: str
    text: str
    channel: Channel = "sms"
    purpose: Purpose = "otp"
    code: str | None = None

    def __post_init__(self) -> None:
        if not _NUMBER.fullmatch(self.to):
            raise ValueError("a text's number must be E.164 digits without '+'")
        if not self.text or len(self.text) > MAX_TEXT:
            raise ValueError(f"a text must have 1 to {MAX_TEXT} characters")
        if self.channel not in get_args(Channel):
            raise ValueError(f"unknown text channel {self.channel!r}")
        if self.purpose not in get_args(Purpose):
            raise ValueError(f"unknown text purpose {self.purpose!r}")

    @property
    def masked(self) -> str:
        """The number as logs show it: country side and last two digits only."""
        return f"+{self.to[:2]}…{self.to[-2:]}"

    def to_dict(self) -> dict[str, JSONValue]:
        """The stored form (an outbox job's payload)."""
        data: dict[str, JSONValue] = {
            "to": self.to,
            "text": self.text,
            "channel": self.channel,
            "purpose": self.purpose,
        }
        if self.code is not None:
            data["code"] = self.code
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, JSONValue]) -> TextMessage:
        """Rebuild a stored text; checks it again.

        Raises:
            ValueError: a field is missing, of the wrong type, or invalid.
        """
        fields: dict[str, str] = {}
        for name in ("to", "text", "channel", "purpose", "code"):
            value = data.get(name)
            if value is None and name == "code":
                continue
            if not isinstance(value, str):
                raise ValueError(f"stored text has no string {name!r}")
            fields[name] = value
        return cls(**fields)  # type: ignore[arg-type]  # checked in __post_init__

"""Dev mode's SMS provider: texts land in the dev inbox beside the mail."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apitask_auth.delivery.devinbox import DevInbox

    from .message import TextMessage

__all__ = ["DevInboxProvider"]


class DevInboxProvider:
    """Store every text in a :class:`DevInbox` (its page and ``/_dev/inbox/texts``)."""

    def __init__(self, inbox: DevInbox) -> None:
        self.inbox = inbox

    async def send(self, message: TextMessage) -> str:
        """Catch ``message``; return the inbox's id for it."""
        return self.inbox.add_text(message.to, message.text, channel=message.channel).id

    async def aclose(self) -> None:
        """Nothing to close."""

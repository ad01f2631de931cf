"""The one interface every mail client offers, so clients can wrap each other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._message import Message

__all__ = ["MailClient"]


@runtime_checkable
class MailClient(Protocol):
    """Something that sends a :class:`Message`.

    Clients compose: a template mailer renders and hands the message to a
    validating client, which hands it to a background client, which hands it
    to an SMTP (or no-op) client. ``send`` returns when the message is
    handed on or delivered, and raises :class:`MailError` when it is not.
    """

    async def send(self, message: Message) -> None:
        """Send ``message`` or raise :class:`MailError`."""

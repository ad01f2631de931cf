"""The service's one door to mail: what handlers call, and how it is delivered.

Handlers call :meth:`Mailer.send` with a template name and the data GoTrue's
templates get (§4.2). The mail is rendered in the request (a template error
fails the request, not a worker later) and then handed to delivery as the
configured mode says.

:class:`apitask_auth.mail_chain.MailChain` is the implementation: it renders
with apitask's :class:`~apitask.mail.TemplateMailer` (GoTrue's default or
custom templates) and delivers through apitask's mail clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


__all__ = [
    "MailData",
    "Mailer",
    "Template",
]

Template = Literal[
    "confirmation",
    "invite",
    "recovery",
    "magic_link",
    "email_change",
    "reauthentication",
    "password_changed_notification",
    "email_changed_notification",
]


@dataclass(frozen=True, slots=True)
class MailData:
    """What a template can show (GoTrue's template variables, §4.2)."""

    email: str
    site_url: str
    token: str = ""
    token_hash: str = ""
    confirmation_url: str = ""
    redirect_to: str = ""
    new_email: str = ""
    old_email: str = ""
    sending_to: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Mailer(Protocol):
    """What the handlers need from mail."""

    async def send(
        self, template: Template, to: str, data: MailData, *, connection: AsyncConnection
    ) -> None:
        """Render the ``template`` mail for ``to`` now and deliver it per the delivery mode.

        ``connection`` is the flow's open transaction: the outbox writes its job there.
        """
        ...

    async def aclose(self) -> None:
        """Finish deliveries and release connections."""
        ...

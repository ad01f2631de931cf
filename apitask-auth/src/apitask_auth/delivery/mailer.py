"""The service's one door to mail: what handlers call, and how it is delivered.

Handlers call :meth:`Mailer.send` with a template name and the data GoTrue's
templates get (§4.2). The mail is rendered in the request (a template error
fails the request, not a worker later) and then handed to delivery as the
configured mode says.

:class:`apitask_auth.delivery.mail_chain.MailChain` is the implementation: it renders
with apitask's :class:`~apitask.mail.TemplateMailer` (GoTrue's default or
custom templates) and delivers through apitask's mail clients.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

# The template variables are the library's (GoTrue's names, §4.2); the site
# URL comes from the mailer, not from each mail.
from apitask.mail import MailData

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.storage.rows import User


__all__ = [
    "MailData",
    "Mailer",
    "Template",
]

# The mail types the service sends: a subset of apitask.mail.MailType.
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


class Mailer(Protocol):
    """What the handlers need from mail."""

    async def send(
        self,
        template: Template,
        to: str,
        data: MailData,
        *,
        connection: AsyncConnection,
        user: User,
    ) -> None:
        """Render the ``template`` mail for ``to`` now and deliver it per the delivery mode.

        ``connection`` is the flow's open transaction: the outbox writes its job
        there. ``user`` is the account the mail is about: the send-email hook,
        when enabled, receives it instead of a rendered mail (§4.7).
        """
        ...

    async def send_email_change(
        self, mails: list[tuple[str, MailData]], *, connection: AsyncConnection, user: User
    ) -> None:
        """Send the one or two mails of an e-mail change (the current address's first).

        One send for the rate limits and for the send-email hook, which gets
        both codes in one call (§4.7); otherwise each mail as :meth:`send` does.
        """
        ...

    async def aclose(self) -> None:
        """Finish deliveries and release connections."""
        ...

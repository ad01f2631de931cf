"""The service's one door to mail: what handlers call, and how it is delivered.

Handlers call :meth:`Mailer.send` with a template name and the data GoTrue's
templates get (§4.2). The mail is rendered in the request (a template error
fails the request, not a worker later) and then handed to delivery as the
configured mode says.

:class:`apitask_auth.mail_chain.MailChain` is the implementation: it renders
with :func:`render` and delivers through apitask's mail clients.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


__all__ = [
    "MailData",
    "Mailer",
    "RenderedMail",
    "Template",
    "render",
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


@dataclass(frozen=True, slots=True)
class RenderedMail:
    """A final message, ready to deliver: what is queued is what is sent."""

    to: str
    subject: str
    html: str
    text: str
    type: str
    headers: dict[str, str] = field(default_factory=dict)


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


# The pre-2026 defaults (§4.3): their bodies carry the OTP, which OTP flows need.
_SUBJECTS: dict[str, str] = {
    "confirmation": "Confirm Your Email",
    "invite": "You have been invited",
    "recovery": "Reset Your Password",
    "magic_link": "Your Magic Link",
    "email_change": "Confirm Email Change",
    "reauthentication": "Confirm reauthentication",
    "password_changed_notification": "Your password has been changed",
    "email_changed_notification": "Your email address has been changed",
}
_ACTIONS: dict[str, str] = {
    "confirmation": "Confirm your mail",
    "invite": "Accept the invite",
    "recovery": "Reset Password",
    "magic_link": "Log In",
    "email_change": "Change Email",
}


def render(template: Template, to: str, data: MailData) -> RenderedMail:
    """Render the default subject and bodies for a mail."""
    subject = _SUBJECTS[template]
    text_lines: list[str] = []
    html_parts = [f"<h2>{html.escape(subject)}</h2>"]
    if template == "email_change":
        line = f"Confirm the change of your email from {data.email} to {data.new_email}."
        text_lines.append(line)
        html_parts.append(f"<p>{html.escape(line)}</p>")
    if template in _ACTIONS:
        action, url = _ACTIONS[template], data.confirmation_url
        text_lines.append(f"{action}: {url}")
        html_parts.append(f'<p><a href="{html.escape(url)}">{html.escape(action)}</a></p>')
    if data.token:
        line = f"Alternatively, enter the code: {data.token}"
        text_lines.append(line)
        html_parts.append(f"<p>{html.escape(line)}</p>")
    if template.endswith("_notification"):
        line = f"This is a notice about your account {data.email} at {data.site_url}."
        text_lines.append(line)
        html_parts.append(f"<p>{html.escape(line)}</p>")
    return RenderedMail(
        to=to,
        subject=subject,
        html="".join(html_parts),
        text="\n\n".join(text_lines) + "\n",
        type=template,
    )

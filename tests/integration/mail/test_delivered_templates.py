"""Every mail type, rendered by TemplateMailer and sent by SMTPClient, as the server got it.

The unit tests check the rendered Message; this checks what reaches a real
SMTP server: the parsed bytes carry the same subject, both bodies, the link
and the code, and the Message-ID the message was given.
"""

from __future__ import annotations

import html
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import TYPE_CHECKING, get_args

from apitask.mail import MailData, MailType, TemplateMailer

from .smtp_server import SENDER, client_for

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .smtp_server import MailServer

LINK = "https://auth.example.com/verify?token=pkce_1a2b&type=signup&redirect_to=https://app.example.com/"
CODE = "739102"


def data_for(kind: str) -> MailData:
    """Realistic values for ``kind``; non-ASCII on purpose (encoded-words, 8-bit bodies)."""
    return MailData(
        email="zoë@example.org",
        token=CODE,
        token_hash="pkce_1a2b",
        confirmation_url=LINK,
        redirect_to="https://app.example.com/",
        new_email="zoë@new.example.org",
        old_email="zoë@old.example.org",
        sending_to="zoë@example.org",
        phone="+15550100",
        old_phone="+15550199",
        provider="github",
        factor_type="totp",
        data={"name": "Zoë Ündine"},
    )


def parts(delivered: EmailMessage) -> tuple[str, str]:
    """The (text, html) bodies of a delivered mail, decoded."""
    text = delivered.get_body(("plain",))
    markup = delivered.get_body(("html",))
    assert text is not None
    assert markup is not None
    return str(text.get_content()), str(markup.get_content())


async def test_every_mail_type_arrives_intact(
    mail_server: Callable[..., Awaitable[MailServer]],
) -> None:
    server = await mail_server(enable_SMTPUTF8=True)  # the recipient is international
    kinds: tuple[MailType, ...] = get_args(MailType)
    async with client_for(server) as client:
        mailer = TemplateMailer(
            client, site_url="https://app.example.com", message_id_domain="acme.example"
        )
        sent = [await mailer.send(kind, "zoë@example.org", data_for(kind)) for kind in kinds]
    assert len(server.messages) == len(kinds)
    for kind, message, raw in zip(kinds, sent, server.messages, strict=True):
        delivered = message_from_bytes(raw, policy=policy.default)
        assert isinstance(delivered, EmailMessage)
        assert delivered["Subject"] == message.subject, kind
        assert delivered["To"] == "zoë@example.org"
        assert delivered["From"] == SENDER
        assert delivered["Message-ID"] == message.message_id
        text, markup = parts(delivered)
        # Bodies survive transfer encoding exactly (line endings aside).
        assert text.replace("\r\n", "\n") == message.text.replace("\r\n", "\n"), kind
        assert markup.replace("\r\n", "\n") == message.html.replace("\r\n", "\n"), kind
        if kind in ("invite", "confirmation", "recovery", "magic_link", "email_change"):
            assert LINK in text, kind
            assert f'href="{html.escape(LINK)}"' in markup, kind
        if kind in ("confirmation", "recovery", "magic_link", "email_change", "reauthentication"):
            assert CODE in text, kind
            assert CODE in markup, kind

"""Stand-ins for apitask.mail's clients until they are merged (deleted then).

The names and signatures are the library's (``MailTask(message, client)``,
``MailTask.factory(client)``, ``BackgroundClient(client)``, ``NoopClient``,
``SMTPClient(host=, port=, sender=, ...)``), so the swap is an import change
in :mod:`apitask_auth.mail_chain`.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import aiosmtplib

import apitask
from apitask.mail import InvalidMessageError, Message, PermanentMailError, TransientMailError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from apitask import JSONValue, Task
    from apitask.mail import MailClient
    from apitask.outbox import TaskFactory

__all__ = ["BackgroundClient", "MailTask", "NoopClient", "SMTPClient"]

logger = logging.getLogger("apitask.mail")


class MailTask:
    """Send one message through a client, as a durable apitask task."""

    def __init__(self, message: Message, client: MailClient) -> None:
        self.message = message
        self.client = client
        self.type = f"mailer.{message.type}"

    def payload(self) -> Mapping[str, JSONValue]:
        """``{"message": message.to_dict()}``."""
        return {"message": self.message.to_dict()}

    async def run(self) -> None:
        """Send the message."""
        await self.client.send(self.message)

    @classmethod
    def factory(cls, client: MailClient) -> TaskFactory:
        """Rebuild stored mail tasks that send through ``client``."""

        def build(type: str, payload: Mapping[str, JSONValue]) -> Task:
            data = payload.get("message")
            if not isinstance(data, dict):
                raise InvalidMessageError(f"stored mail task {type!r} has no message")
            return cls(Message.from_dict(data), client)

        return build


class BackgroundClient:
    """Hand every mail to :func:`apitask.run` as a :class:`MailTask`."""

    def __init__(self, client: MailClient) -> None:
        self.client = client

    async def send(self, message: Message) -> None:
        """Run, submit or start the mail's task, as the current scope says."""
        await apitask.run(MailTask(message, self.client))


class NoopClient:
    """Log and drop every mail (no SMTP host configured)."""

    def __init__(self, *, site_url: str | None = None) -> None:
        logger.info("mail: no SMTP host configured for %s: mails are dropped", site_url)

    async def send(self, message: Message) -> None:
        """Drop the mail."""
        logger.info("mail: dropped %s mail (no SMTP host)", message.type)


class SMTPClient:
    """One SMTP connection per message (the library's client pools them)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        local_hostname: str | None = None,
        pool_size: int = 4,
        **_options: Any,
    ) -> None:
        self._options: dict[str, Any] = {
            "hostname": host,
            "port": port,
            "username": username,
            "password": password,
            "local_hostname": local_hostname,
            "timeout": 30,
        }
        self.sender = sender

    async def send(self, message: Message) -> None:
        """Send over a fresh connection."""
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail["Date"] = message.date
        mail["Message-ID"] = message.message_id
        for name, value in message.headers.items():
            mail[name] = value
        mail.set_content(message.text or " ")
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        try:
            await aiosmtplib.send(mail, **self._options)
        except aiosmtplib.SMTPResponseException as exc:
            error = TransientMailError if exc.code < 500 else PermanentMailError
            raise error(str(exc), code=exc.code) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransientMailError(str(exc)) from exc

    async def aclose(self) -> None:
        """Nothing is kept open."""

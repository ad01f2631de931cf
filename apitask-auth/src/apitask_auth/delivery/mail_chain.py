"""The one place where the service's mail chain is assembled: settings -> clients.

What a handler's :meth:`MailChain.send` goes through, in the request::

    TemplateMailer    GoTrue's default or custom templates, subjects and
                      GOTRUE_SMTP_HEADERS -> the final Message
    ValidatingClient  syntax always; GoTrue's extended checks and validation
                      service when configured (refusals: 400 in the request)
    BackgroundClient  apitask.run(MailTask(message, transport))

and where that task runs is the delivery mode, set up once for every chain
of the service by :class:`~apitask_auth.delivery.runtime.DeliveryRuntime`
(one pool, one outbox, one in-process outbox worker). The chain registers
the ``"mailer."`` task prefix with it, so the worker sends stored mail.

The transport is an :class:`SMTPClient` to ``GOTRUE_SMTP_HOST``, to the dev
inbox (dev mode without an SMTP host), or a no-op client (GoTrue's behaviour
without an SMTP host).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import logging
from email.utils import formataddr
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from apitask import Outcome, TaskCounters
from apitask.mail import (
    BackgroundClient,
    MailTask,
    NoopClient,
    SMTPClient,
    TemplateCache,
    TemplateMailer,
    TemplateReloader,
    ValidatingClient,
)
from apitask.outbox import TaskRegistry
from apitask_auth.config import Settings, parse_smtp_headers
from apitask_auth.delivery.devinbox import DevInbox
from apitask_auth.delivery.send_hooks import send_hook

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask.mail import MailClient, Message
    from apitask_auth.delivery.mailer import MailData, Template
    from apitask_auth.delivery.runtime import DeliveryRuntime
    from apitask_auth.storage.rows import User

__all__ = ["CountingClient", "MailChain", "mail_registry", "transport_for"]

logger = logging.getLogger("apitask_auth")

DEV_SENDER_NAME = "apitask-auth dev"


def api_host(settings: Settings) -> str:
    """The host of ``API_EXTERNAL_URL``: the EHLO name (as in GoTrue)."""
    return urlsplit(settings.api_external_url).hostname or "localhost"


def from_address(settings: Settings) -> str:
    """``GOTRUE_SMTP_ADMIN_EMAIL``, or ``noreply@`` the API's host without one (dev mode)."""
    return settings.smtp_admin_email or f"noreply@{api_host(settings)}"


def message_id_domain(settings: Settings) -> str:
    """The domain of every Message-ID: the From address's domain.

    GoTrue writes no Message-ID (its relay adds one); ours is fixed when the
    mail is rendered, so a retry is recognisably the same mail. The From
    domain is the one the sender controls and the one receivers' DKIM and
    spam checks look at, and taking it from :func:`from_address` keeps the
    two from drifting apart.
    """
    return from_address(settings).rpartition("@")[2]


def sender(settings: Settings) -> str:
    """The From header: ``GOTRUE_SMTP_SENDER_NAME <GOTRUE_SMTP_ADMIN_EMAIL>``."""
    name = settings.smtp_sender_name or ("" if settings.smtp_admin_email else DEV_SENDER_NAME)
    return formataddr((name, from_address(settings)))


def transport_for(settings: Settings, inbox: tuple[str, int] | None = None) -> MailClient:
    """The client that delivers: SMTP to the configured host or to ``inbox``, else no-op.

    SMTP follows GoTrue: implicit TLS on port 465, else STARTTLS when offered;
    the EHLO name is the API's host; ``GOTRUE_SMTP_LOGGING_ENABLED`` logs a
    ``mail.send`` line per mail. The dev inbox is plain SMTP on loopback.
    """
    if inbox is not None:
        return SMTPClient(
            host=inbox[0],
            port=inbox[1],
            sender=sender(settings),
            tls="none",
            local_hostname=api_host(settings),
            log_sends=settings.smtp_logging_enabled,
        )
    if settings.smtp_host:
        return SMTPClient(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=sender(settings),
            pool_size=settings.smtp_max_pool_size,
            username=settings.smtp_user or None,
            password=settings.smtp_pass or None,
            local_hostname=api_host(settings),
            log_sends=settings.smtp_logging_enabled,
        )
    return NoopClient(site_url=settings.site_url)


def mail_registry(transport: MailClient) -> TaskRegistry:
    """The outbox registry of a worker that sends stored mail through ``transport``."""
    registry = TaskRegistry()
    registry.register_prefix("mailer.", MailTask.factory(transport))
    return registry


async def aclose(client: object) -> None:
    """Close ``client`` if it has anything to close (a no-op client has not)."""
    close = getattr(client, "aclose", None)
    if close is not None:
        await close()


class CountingClient:
    """Counts every mail handed to the mailer chain, then hands it on.

    It sits in front of validation and delivery, after the rate limits: what
    GoTrue counts as ``global_auth_email_send_operations_total``.
    """

    __slots__ = ("client", "counters")

    def __init__(self, client: MailClient, counters: TaskCounters) -> None:
        self.client = client
        self.counters = counters

    async def send(self, message: Message) -> None:
        """Count ``message`` by type, then send it on."""
        self.counters.add(message.type, Outcome.SUBMITTED)
        await self.client.send(message)


class MailChain:
    """The service's mailer: renders in the request, delivers as the mode says.

    Built with the app; :meth:`start` and :meth:`aclose` run in its lifespan.

    Args:
        settings: the configuration.
        transport: deliver through this client instead of SMTP / the dev
            inbox / the no-op client (tests pass a recording client).
        runtime: the service's shared delivery runtime; the app installs it,
            starts it after this chain and closes it before.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        runtime: DeliveryRuntime,
        transport: MailClient | None = None,
    ) -> None:
        self.settings = settings
        self._given = transport
        # The dev inbox catches mail without an SMTP host, and texts without
        # an SMS provider (it is shared: the SMS chain sends there too).
        self._to_inbox = settings.dev and not settings.smtp_host and transport is None
        self.inbox: DevInbox | None = None
        if self._to_inbox or (settings.dev and not settings.sms_provider):
            self.inbox = DevInbox()
        self.runtime = runtime
        self.transport: MailClient | None = None
        # GoTrue's send-email hook: when enabled it replaces rendering and SMTP (§4.7).
        self.email_hook = send_hook(settings, "send_email")
        # Built now, so a bad subject or header fails the start; it gets its
        # client (validation -> background -> transport) in start().
        self.templates = TemplateMailer(
            _NotStarted(),
            site_url=settings.site_url,
            message_id_domain=message_id_domain(settings),
            subjects=settings.mailer_subjects,
            templates=settings.mailer_templates,
            headers=parse_smtp_headers(settings.smtp_headers),
            cache=TemplateCache(
                max_size=settings.mailer_template_max_size,
                max_age=settings.mailer_template_max_age.total_seconds(),
                retry_interval=settings.mailer_template_retry_interval.total_seconds(),
            ),
        )
        self.reloader: TemplateReloader | None = None
        if settings.mailer_template_reloading_enabled:
            self.reloader = TemplateReloader(
                self.templates.cache,
                max_idle=settings.mailer_template_reloading_max_idle.total_seconds(),
            )
        # Mails handed to the chain, by type: GoTrue's send operations (§4.8).
        self.operations = TaskCounters()

    def install(self, app: FastAPI) -> None:
        """Add the dev inbox's pages."""
        if self.inbox is not None:
            app.include_router(self.inbox.router)

    async def start(self) -> None:
        """Start the dev inbox and the transport, and register the ``mailer.`` tasks."""
        # The inbox listens for SMTP only when the mail goes there: it may hold texts only.
        address = await self.inbox.start() if self._to_inbox and self.inbox is not None else None
        self.transport = self._given or transport_for(self.settings, address)
        self.templates.client = CountingClient(
            ValidatingClient(
                BackgroundClient(self.transport),
                extended=self.settings.mailer_email_validation_extended,
                blocked_mx=self.settings.blocked_mx,
                service_url=self.settings.mailer_email_validation_service_url or None,
                service_headers=self.settings.validation_service_headers,
            ),
            self.operations,
        )
        if self.reloader is not None:
            self.reloader.start()
        self.runtime.register("mailer.", MailTask.factory(self.transport))
        if self.email_hook is not None:
            self.email_hook.register(self.runtime)

    async def aclose(self) -> None:
        """Close the transport, then stop the inbox (in that order, so mail still in
        flight reaches the inbox); the runtime has drained before."""
        if self.reloader is not None:
            await self.reloader.aclose()
        if self.transport is not None:
            await aclose(self.transport)
        if self.email_hook is not None:
            await self.email_hook.aclose()
        if self.inbox is not None:
            await self.inbox.stop()

    async def send(
        self,
        template: Template,
        to: str,
        data: MailData,
        *,
        connection: AsyncConnection,
        user: User,
    ) -> None:
        """Render and validate now; deliver as the mode says (see the module docstring).

        With the send-email hook enabled, call the hook instead (about ``user``).

        Raises:
            TemplateError, InvalidMessageError: the mail cannot be rendered or
                sent safely; ``InvalidAddressError``: the recipient was refused.
            MailError: ``inline`` only: the mail server refused it.
            APIError: ``inline`` only: the send-email hook failed (GoTrue's answer).
            RuntimeError: the chain was not started (the app's lifespan did not run).
        """
        if self.email_hook is not None:
            await self.email_hook.send_email(
                connection, user, template, [data], settings=self.settings, runtime=self.runtime
            )
            return
        # Outbox mode writes the job in the flow's transaction; pool mode only
        # when its queue is full.
        async with self.runtime.declared_in(connection):
            await self.templates.send(template, to, data)

    async def send_email_change(
        self, mails: list[tuple[str, MailData]], *, connection: AsyncConnection, user: User
    ) -> None:
        """The mails of one e-mail change: one hook call for all, else one mail each."""
        if self.email_hook is not None:
            await self.email_hook.send_email(
                connection,
                user,
                "email_change",
                [data for _, data in mails],
                settings=self.settings,
                runtime=self.runtime,
            )
            return
        for to, data in mails:
            await self.send("email_change", to, data, connection=connection, user=user)


class _NotStarted:
    async def send(self, message: Message) -> None:
        raise RuntimeError("the mail chain is not started: run the app's lifespan")

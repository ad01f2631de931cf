"""The one place where the service's mail chain is assembled: settings -> clients.

What a handler's :meth:`MailChain.send` goes through, in the request::

    TemplateMailer    GoTrue's default or custom templates, subjects and
                      GOTRUE_SMTP_HEADERS -> the final Message
    ValidatingClient  syntax always; GoTrue's extended checks and validation
                      service when configured (refusals: 400 in the request)
    BackgroundClient  apitask.run(MailTask(message, transport))

and where that task runs is the delivery mode, set up here once:

* ``inline``: no request scope, so ``apitask.run`` sends in the handler and
  raises the send's error (the flow maps it to GoTrue's 500).
* ``request``: :class:`apitask.asgi.TaskMiddleware` opens a scope per request;
  the send runs concurrently and the response is held until it is done
  (``before_response``, as GoTrue's middleware waits before returning).
* ``pool``: the same middleware, bound to a :class:`apitask.WorkerPool`: the
  response waits for nothing; the pool drains on shutdown, and what its
  deadline leaves is spilled to the outbox (same database), which an outbox
  worker sends later.
* ``outbox``: the send is declared in the flow's transaction
  (:meth:`apitask.outbox.Outbox.transaction`): the job row commits with the
  user's token or not at all, with the request's id (the same middleware,
  bound to the outbox, opens the scope that carries it); an outbox worker
  in this process (and any ``apitask-auth worker``) sends it. The in-process
  worker runs in pool mode too, for the spilled mail
  (``GOTRUE_OUTBOX_WORKER_ENABLED``).

The transport is an :class:`SMTPClient` to ``GOTRUE_SMTP_HOST``, to the dev
inbox (dev mode without an SMTP host), or a no-op client (GoTrue's behaviour
without an SMTP host).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from email.utils import formataddr
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from apitask import Outcome, TaskCounters, WorkerPool
from apitask.asgi import TaskMiddleware
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
from apitask.outbox import Outbox, TaskRegistry, open_store
from apitask_auth.config import Delivery, Settings, parse_smtp_headers
from apitask_auth.delivery.devinbox import DevInbox
from apitask_auth.delivery.send_hooks import send_hook

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask.mail import MailClient, Message
    from apitask.outbox import Worker
    from apitask_auth.delivery.mailer import MailData, Template
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
    """

    def __init__(self, settings: Settings, *, transport: MailClient | None = None) -> None:
        self.settings = settings
        self.delivery = settings.delivery
        self._given = transport
        self.inbox: DevInbox | None = None
        if settings.dev and not settings.smtp_host and transport is None:
            self.inbox = DevInbox()
        # The outbox: where outbox mode writes its jobs, and where pool mode
        # spills what its drain could not send in time (sent by an outbox worker).
        self.outbox: Outbox | None = None
        if self.delivery in {Delivery.POOL, Delivery.OUTBOX}:
            self.outbox = Outbox(open_store(settings.database.url))
        self.pool: WorkerPool | None = None
        if self.delivery is Delivery.POOL:
            self.pool = WorkerPool(
                per_cpu=settings.worker_count_per_cpu,
                queue_size=settings.worker_queue_size,
                # A full queue must not send inline: the handler is inside the
                # flow's transaction (on SQLite, holding the write lock). The
                # overflow becomes an outbox job in that transaction instead.
                when_full="spill",
                shutdown_timeout=settings.worker_shutdown_duration.total_seconds(),
                spill=self.outbox.sink if self.outbox is not None else None,
            )
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
        self._worker: Worker | None = None
        self._worker_run: asyncio.Task[None] | None = None

    @property
    def worker(self) -> Worker | None:
        """The in-process outbox worker, once started (None when there is none)."""
        return self._worker

    def install(self, app: FastAPI) -> None:
        """Add the request-scope middleware the mode needs, and the dev inbox's pages."""
        if self.delivery is Delivery.REQUEST:
            app.add_middleware(TaskMiddleware, wait="before_response")
        elif self.pool is not None:
            app.add_middleware(TaskMiddleware, sink=self.pool)
        elif self.outbox is not None:
            # A scope per request: the job row gets the request's id, and the
            # worker that sends the mail logs with it.
            app.add_middleware(TaskMiddleware, sink=self.outbox.sink)
        if self.inbox is not None:
            app.include_router(self.inbox.router)

    async def start(self) -> None:
        """Start the dev inbox, the transport, the pool or the outbox and its worker."""
        address = await self.inbox.start() if self.inbox is not None else None
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
        if self.outbox is not None:
            self.outbox.registry.register_prefix("mailer.", MailTask.factory(self.transport))
            if self.email_hook is not None:
                self.email_hook.register(self.outbox.registry)
            await self.outbox.store.open()
            if self.settings.outbox_worker_enabled:
                self._start_worker(self.outbox)
        if self.pool is not None:
            await self.pool.start()

    def _start_worker(self, outbox: Outbox) -> None:
        self._worker = outbox.worker(
            concurrency=(os.cpu_count() or 1) * self.settings.worker_count_per_cpu,
            shutdown_timeout=self.settings.worker_shutdown_duration.total_seconds(),
            lease=self.settings.outbox_worker_lease.total_seconds(),
        )
        self._worker_run = asyncio.get_running_loop().create_task(self._worker.run())
        self._worker_run.add_done_callback(_report_worker_end)

    async def aclose(self) -> None:
        """Drain what is queued, close the transport, then stop the inbox (in that order,
        so mail still in flight reaches the inbox)."""
        if self._worker is not None and self._worker_run is not None:
            self._worker.stop()
            with contextlib.suppress(Exception):  # already logged by _report_worker_end
                await self._worker_run
        if self.pool is not None:
            # Leftovers at the deadline are spilled to the outbox (still open here).
            await self.pool.aclose()
        if self.outbox is not None:
            await self.outbox.aclose()
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
                connection, user, template, [data], settings=self.settings, outbox=self.outbox
            )
        elif self.outbox is not None:
            # Outbox mode writes the job here; pool mode only when its queue is full.
            async with self.outbox.transaction(connection):
                await self.templates.send(template, to, data)
        else:
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
                outbox=self.outbox,
            )
            return
        for to, data in mails:
            await self.send("email_change", to, data, connection=connection, user=user)


class _NotStarted:
    async def send(self, message: Message) -> None:
        raise RuntimeError("the mail chain is not started: run the app's lifespan")


def _report_worker_end(run: asyncio.Task[None]) -> None:
    if not run.cancelled() and (error := run.exception()) is not None:
        logger.error("the in-process outbox worker stopped: %s", error, exc_info=error)

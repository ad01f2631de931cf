"""GoTrue's send-email and send-SMS hooks, called through apitask (§4.7).

When ``GOTRUE_HOOK_SEND_EMAIL_ENABLED`` is on, no mail is rendered or sent:
the service POSTs ``{metadata, user, email_data}`` to the hook instead;
``GOTRUE_HOOK_SEND_SMS_ENABLED`` does the same for texts with ``{metadata,
user, sms}``. Each call is a :class:`apitask.webhooks.WebhookTask`, so it
goes where the delivery mode sends every task: in the handler (``inline``:
a failure answers the request, as in GoTrue), in the request scope
(``request``), to the worker pool (``pool``) or into the outbox with the
flow's transaction (``outbox``), retried with backoff in the last two.

Unlike GoTrue, the ``webhook-id`` is fixed once per send and reused by every
retry (GoTrue makes a new one per attempt), so the hook can de-duplicate;
``metadata.uuid`` is the same id. The secrets never reach the outbox: its
rows hold the URL, the id and the body, and the worker's registry holds the
client that signs.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from apitask import Outcome, TaskCounters
from apitask.webhooks import (
    HTTPWebhookClient,
    PermanentWebhookError,
    TransientWebhookError,
    Webhook,
    WebhookError,
    WebhookTask,
)
from apitask_auth.accounts.users import iso, user_body
from apitask_auth.errors import APIError, ErrorCode, internal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask.outbox import TaskRegistry
    from apitask.webhooks import WebhookResponse
    from apitask_auth.config import Settings
    from apitask_auth.delivery.mailer import MailData, Template
    from apitask_auth.delivery.runtime import DeliveryRuntime
    from apitask_auth.delivery.texter import Channel, Purpose
    from apitask_auth.storage.rows import User

__all__ = [
    "HookAnswerError",
    "PermanentHookAnswer",
    "SendHook",
    "SmsHookTexter",
    "TransientHookAnswer",
    "check_answer",
    "email_action_type",
    "register_send_hooks",
    "send_hook",
]

# Our template names -> GoTrue's email_action_type (§4.2).
_ACTION_TYPES: dict[str, str] = {
    "confirmation": "signup",
    "magic_link": "magiclink",
}


def email_action_type(template: Template) -> str:
    """GoTrue's ``email_action_type`` of the ``template`` mail (§4.2)."""
    return _ACTION_TYPES.get(template, template)


class HookAnswerError(WebhookError):
    """The hook answered 2xx with GoTrue's error object, ``{"error": {"http_code", "message"}}``.

    Raised as a :class:`TransientHookAnswer` (retried) for a 429 or 5xx
    ``http_code``, else as a :class:`PermanentHookAnswer`.

    Attributes:
        http_code: the status the hook asked the request to fail with (500 if none).
        message: the hook's message as :meth:`WebhookResponse.excerpt
            <apitask.webhooks.WebhookResponse.excerpt>` gives it: every string
            the call sent (address, phone, one-time code, token hash) replaced
            by ``***``, on one line, at most 300 characters (``...`` when cut),
            as a non-2xx answer's text. It is the error's text, so it reaches
            logs, an outbox job's ``last_error`` and, inline, the request's
            answer (whose 5xx message is logged too).
    """

    def __init__(self, http_code: int, message: str, *, status: int) -> None:
        super().__init__(f"the hook answered HTTP {status} with an error: {message}", status=status)
        self.http_code = http_code
        self.message = message


class TransientHookAnswer(HookAnswerError, TransientWebhookError):
    """A hook's error object with a 429 or 5xx code: may pass."""


class PermanentHookAnswer(HookAnswerError, PermanentWebhookError):
    """A hook's error object with another code."""


def check_answer(answer: WebhookResponse) -> None:
    """Raise the error a 2xx answer carries in GoTrue's error object, if it does.

    GoTrue also refuses a 2xx without a JSON content type; we accept any
    answer that carries no error object.
    """
    try:
        data = json.loads(answer.body)
    except ValueError:
        return
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return
    code = error.get("http_code")
    http_code = code if isinstance(code, int) and 400 <= code <= 599 else 500
    # The message becomes the error's text, logged and stored: a hook may echo
    # what it was sent ("cannot send 123456 to ann@x") and may answer with a
    # long or multi-line text (a stack trace), which would fill the log lines
    # and the outbox's last_error as a non-2xx answer cannot.
    message = answer.excerpt(str(error.get("message") or ""))
    kind = TransientHookAnswer if http_code == 429 or http_code >= 500 else PermanentHookAnswer
    raise kind(http_code, message, status=answer.status)


class SendHook:
    """One configured hook: its URI and the client that signs and POSTs to it.

    Args:
        name: GoTrue's hook name, ``"send-email"`` or ``"send-sms"``; the
            task type is ``"webhook.<name>"``.
        uri: ``GOTRUE_HOOK_<NAME>_URI``.
        secrets: the ``whsec_...`` secrets (from ``GOTRUE_HOOK_<NAME>_SECRETS``).
        timeout: seconds the hook has for one attempt (``GOTRUE_HOOK_TIMEOUT``,
            ours; GoTrue's is a fixed 5 s).
    """

    def __init__(self, name: str, uri: str, secrets: list[str], *, timeout: float = 5.0) -> None:
        self.name = name
        self.uri = uri
        self.client = HTTPWebhookClient(secrets, timeout=timeout, check=check_answer)
        # Calls handed to apitask, by hook name (what /metrics counts as send operations).
        self.operations = TaskCounters()

    @property
    def task_type(self) -> str:
        """The outbox task type of this hook's calls."""
        return f"webhook.{self.name}"

    def register(self, registry: TaskRegistry | DeliveryRuntime) -> None:
        """Make an outbox worker deliver this hook's stored calls, signed by this client:
        a worker command's ``registry``, or the service's runtime (its in-process worker)."""
        registry.register(self.task_type, WebhookTask.factory(self.client))

    async def call(
        self,
        connection: AsyncConnection,
        user: User,
        payload: Mapping[str, Any],
        *,
        runtime: DeliveryRuntime,
    ) -> None:
        """Hand one call, ``{metadata, user, **payload}``, to apitask as the mode says.

        Raises:
            APIError: ``inline`` only: the hook failed (see :meth:`api_error`).
        """
        self.operations.add(self.name, Outcome.SUBMITTED)
        webhook_id = str(uuid.uuid4())
        body = {
            "metadata": {
                "uuid": webhook_id,
                "time": iso(datetime.now(UTC)),
                "name": self.name,
            },
            "user": (await user_body(connection, user)).model_dump(),
            **payload,
        }
        task = WebhookTask(Webhook.create(self.name, self.uri, body, id=webhook_id), self.client)
        try:
            await runtime.run(task, connection)
        except WebhookError as exc:  # inline: the call ran in the handler
            raise self.api_error(exc) from exc

    def api_error(self, error: WebhookError) -> APIError:
        """What the request answers when the hook fails inline, as GoTrue answers.

        The hook's own error object gives its status and message (GoTrue's
        ``checkError``), the message as :attr:`HookAnswerError.message` holds
        it: redacted, one line, at most 300 characters. GoTrue passes it
        whole, but a 5xx answer's message also heads our error log's line,
        and no client needs a hook's stack trace. Anything else is GoTrue's
        500 "Error running hook URI: ..." (GoTrue's ``runHook``), naming the
        URI without its query, fragment or credentials, which GoTrue shows in
        full.
        """
        if isinstance(error, HookAnswerError):
            code = ErrorCode.UNEXPECTED_FAILURE if error.http_code == 500 else ErrorCode.UNKNOWN
            return APIError(error.http_code, code, error.message, internal_error=error)
        parts = urlsplit(self.uri)
        host = parts.netloc.rpartition("@")[2]
        shown = urlunsplit((parts.scheme, host, parts.path, "", ""))
        return internal(f"Error running hook URI: {shown}").with_internal_error(error)

    async def send_email(
        self,
        connection: AsyncConnection,
        user: User,
        template: Template,
        mails: list[MailData],
        *,
        settings: Settings,
        runtime: DeliveryRuntime,
    ) -> None:
        """Call the send-email hook for one send of ``template`` (one or two mails, §4.7).

        ``mails`` holds one mail's data, or for a secure e-mail change the
        current address's mail then the new address's, which GoTrue puts in
        one call: ``token`` the current address's code, ``token_new`` the
        new address's, ``token_hash`` the *new* address's hash and
        ``token_hash_new`` the *current* one's (GoTrue's field swap, kept for
        hooks written against it).
        """
        first = mails[0]
        email_data: dict[str, str] = {
            "token": first.token,
            "token_hash": first.token_hash,
            "redirect_to": first.redirect_to,
            "email_action_type": email_action_type(template),
            # GoTrue sends its external URL here, not GOTRUE_SITE_URL (§4.2).
            "site_url": settings.api_external_url,
            "token_new": "",
            "token_hash_new": "",
        }
        if len(mails) == 2:
            new = mails[1]
            email_data.update(
                token_new=new.token, token_hash=new.token_hash, token_hash_new=first.token_hash
            )
        if first.old_email:
            email_data["old_email"] = first.old_email
        await self.call(connection, user, {"email_data": email_data}, runtime=runtime)

    async def aclose(self) -> None:
        """Close the client's pooled connections."""
        await self.client.aclose()


class SmsHookTexter:
    """The texter of a service whose send-SMS hook is on: it replaces the provider.

    Each text is one call, ``{metadata, user, sms: {otp}}`` (GoTrue's
    payload: the hook gets the code, not a rendered text, and chooses the
    wording, channel and provider itself), through the delivery runtime.

    Args:
        hook: the send-SMS hook.
        runtime: the service's delivery runtime; ``"webhook.send-sms"`` is
            registered with it now, for its outbox worker.
    """

    def __init__(self, hook: SendHook, runtime: DeliveryRuntime) -> None:
        self.hook = hook
        self.runtime = runtime
        hook.register(runtime)

    async def send(
        self,
        phone: str,
        otp: str,
        *,
        user: User,
        channel: Channel = "sms",
        purpose: Purpose = "otp",
        connection: AsyncConnection,
    ) -> None:
        """Call the hook with ``otp`` for ``user`` as the mode says.

        Raises:
            APIError: ``inline`` only: the hook failed (GoTrue's answer).
            TaskError: the pool or the scope refused the call.
        """
        await self.hook.call(connection, user, {"sms": {"otp": otp}}, runtime=self.runtime)

    async def aclose(self) -> None:
        """Close the hook client's connections (after the runtime has drained)."""
        await self.hook.aclose()


def send_hook(settings: Settings, hook: str) -> SendHook | None:
    """The ``hook`` (``"send_email"``, ``"send_sms"``) if it is enabled, else None."""
    if not getattr(settings, f"hook_{hook}_enabled"):
        return None
    return SendHook(
        hook.replace("_", "-"),
        getattr(settings, f"hook_{hook}_uri"),
        settings.hook_secrets(hook),
        timeout=settings.hook_timeout.total_seconds(),
    )


def register_send_hooks(settings: Settings, registry: TaskRegistry) -> list[SendHook]:
    """Register every enabled hook's factory in an outbox worker's ``registry``.

    Returns the hooks, whose clients the caller closes when the worker stops.
    """
    hooks = [hook for name in ("send_email", "send_sms") if (hook := send_hook(settings, name))]
    for hook in hooks:
        hook.register(registry)
    return hooks

"""Django's mail API into the outbox: ``EMAIL_BACKEND = "apitask.contrib.django.EmailBackend"``.

At ``send()`` the message is rendered once, by Django, into its MIME bytes
(Message-ID and Date included) and stored with its envelope as a job in the
caller's transaction. The worker hands those very bytes to the real backend:
attachments and alternatives arrive byte-for-byte as Django wrote them, and
every retry carries the same Message-ID, so a receiver can drop a duplicate.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.policy
import functools
import logging
import smtplib
import threading
from typing import TYPE_CHECKING, Any

from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connections

from ..._exceptions import TransientError
from ...mail import redact_addresses
from ._pooled import POOLED_BACKEND, pooled_client
from ._settings import load_settings
from ._threads import in_thread

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..._types import JSONValue

__all__ = [
    "MAIL_TYPE",
    "EmailBackend",
    "MailJob",
    "MailRefusedError",
    "close_backends",
    "freeze",
]

MAIL_TYPE = "django.mail"

logger = logging.getLogger("apitask.contrib.django")


class MailRefusedError(Exception):
    """The mail cannot go, whatever the retries (a 5xx reply, an address the
    backend cannot write): the job goes dead."""


class MailJob:
    """A durable task: one rendered message, its envelope, and its Message-ID."""

    type = MAIL_TYPE

    __slots__ = ("data", "message_id", "recipients", "sender")

    def __init__(self, sender: str, recipients: Sequence[str], data: bytes, message_id: str):
        self.sender = sender
        self.recipients = list(recipients)
        self.data = data
        self.message_id = message_id

    def __repr__(self) -> str:
        return f"<MailJob {self.message_id} to {len(self.recipients)} recipient(s)>"

    def payload(self) -> Mapping[str, JSONValue]:
        """What the job row stores (the message as base64)."""
        return {
            "from": self.sender,
            "to": list(self.recipients),
            "message_id": self.message_id,
            "mime": base64.b64encode(self.data).decode("ascii"),
        }

    @classmethod
    def from_payload(cls, type: str, payload: Mapping[str, JSONValue]) -> MailJob:
        """Rebuild the job a worker claimed.

        Raises:
            ValueError: the payload is not one :meth:`payload` wrote.
        """
        sender, recipients = payload.get("from"), payload.get("to")
        message_id, mime = payload.get("message_id"), payload.get("mime")
        if not (
            isinstance(sender, str)
            and isinstance(message_id, str)
            and isinstance(mime, str)
            and isinstance(recipients, list)
            and recipients
            and all(isinstance(r, str) for r in recipients)
        ):
            raise ValueError("expected from, to (a non-empty list), message_id and mime")
        try:
            data = base64.b64decode(mime, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"mime is not base64: {exc}") from None
        return cls(sender, [str(r) for r in recipients], data, message_id)

    async def run(self) -> None:
        """Send through ``APITASK["EMAIL_BACKEND"]``: a Django backend in one of
        apitask's threads, or apitask's pooled SMTP client on the worker's loop.

        Raises:
            TransientError: a 4xx reply, a dropped connection, a network error.
            MailRefusedError: a 5xx reply (no retry can help), from a Django backend.
            PermanentMailError: a 5xx reply, from apitask's client.
        """
        if load_settings().email_backend == POOLED_BACKEND:
            await _send_pooled(self)
        else:
            await in_thread(_send, self)


async def _send_pooled(job: MailJob) -> None:
    refused = await pooled_client().send_raw(job.sender, job.recipients, job.data)
    if refused:
        # As Django's SMTP backend does: the others have the mail, so no retry.
        logger.warning(
            "apitask: mail %s: %d of %d recipients refused: %s",
            job.message_id,
            len(refused),
            len(job.recipients),
            "; ".join(str(error) for error in refused.values()),
        )


def freeze(message: EmailMessage) -> MailJob | None:
    """Render ``message`` once, as Django would on the wire; ``None`` without recipients.

    The addresses are kept as given: the backend that sends cleans them, as it
    would have inline (Django's SMTP backend runs ``sanitize_address``).
    """
    recipients = message.recipients()
    if not recipients:
        return None
    mime = message.message()  # adds a Message-ID and a Date unless the message has them
    return MailJob(
        str(message.from_email),
        [str(address) for address in recipients],  # lazy translations become text
        mime.as_bytes(linesep="\r\n"),
        str(mime["Message-ID"]),
    )


class _Rendered:
    """What a backend gets from ``FrozenEmail.message()``: the stored bytes, unchanged."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def as_bytes(self, unixfrom: bool = False, linesep: str = "\n") -> bytes:
        return self.data

    def get_charset(self) -> None:
        return None  # the console and file backends then decode as UTF-8

    @functools.cached_property
    def _parsed(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)

    def __getitem__(self, name: str) -> Any:
        # For backends and tests that read a header (locmem users do).
        return self._parsed[name]


class FrozenEmail(EmailMessage):  # type: ignore[misc]  # Django ships no types
    """An ``EmailMessage`` whose MIME was rendered at enqueue time."""

    def __init__(self, job: MailJob) -> None:
        self.job = job
        self._rendered = _Rendered(job.data)
        super().__init__(from_email=job.sender, to=job.recipients)

    @property
    def subject(self) -> str:
        """Read from the frozen bytes when asked (parsing them costs more than a send)."""
        return str(self._rendered["Subject"] or "")

    @subject.setter
    def subject(self, value: str) -> None:
        pass  # EmailMessage.__init__ sets it; the frozen bytes already carry it

    def message(self, *, policy: Any = None) -> _Rendered:
        return self._rendered


_local = threading.local()
_opened: set[Any] = set()  # every thread's open backend, closed at the worker's exit
_opened_lock = threading.Lock()


def _backend() -> Any:
    backend = getattr(_local, "backend", None)
    if backend is None:
        backend = get_connection(load_settings().email_backend, fail_silently=False)
        # Opened once per thread: later sends reuse the SMTP connection.
        backend.open()
        _local.backend = backend
        with _opened_lock:
            _opened.add(backend)
    return backend


def _discard() -> None:
    backend = _local.__dict__.pop("backend", None)
    if backend is not None:  # None: it failed to open
        _close(backend)


def _close(backend: Any) -> None:
    with _opened_lock:
        _opened.discard(backend)
    # A connection that goes after an error is likely broken already.
    with contextlib.suppress(smtplib.SMTPException, OSError):
        backend.close()


def close_backends() -> None:
    """QUIT every thread's kept connection (the threads are idle: the worker stopped)."""
    with _opened_lock:
        backends = list(_opened)
    for backend in backends:
        _close(backend)


def _send(job: MailJob) -> None:
    # The errors raised here become the job's last_error and the worker's log
    # lines: their text goes through redact_addresses (servers echo addresses
    # in replies, Django's sanitize_address in its ValueError), and the
    # original exception, which holds the text as it was, is not chained.
    fresh = getattr(_local, "backend", None) is None
    try:
        _backend().send_messages([FrozenEmail(job)])
    except smtplib.SMTPServerDisconnected:
        _discard()
        if fresh:
            raise TransientError("the SMTP server closed the connection") from None
        # A kept connection the server closed while idle: once more, on a new one.
        _send(job)
    except smtplib.SMTPResponseException as exc:
        _discard()
        reply = exc.smtp_error
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        reason = f"SMTP {exc.smtp_code}: {redact_addresses(text)}"
        if 500 <= exc.smtp_code < 600:
            raise MailRefusedError(reason) from None
        raise TransientError(reason) from None
    except smtplib.SMTPRecipientsRefused as exc:
        _discard()
        codes = {code for code, _ in exc.recipients.values()}
        reason = f"every recipient refused: {sorted(codes)}"
        if all(500 <= code < 600 for code in codes):
            raise MailRefusedError(reason) from None
        raise TransientError(reason) from None
    except (smtplib.SMTPException, OSError) as exc:
        _discard()
        raise TransientError(f"sending failed: {redact_addresses(repr(exc))}") from None
    except ValueError as exc:  # an address sanitize_address cannot write: no retry helps
        raise MailRefusedError(f"invalid: {redact_addresses(str(exc))}") from None


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]  # Django ships no types
    """A Django mail backend that queues each message as a durable outbox job.

    Inside ``transaction.atomic()`` the job is written in that transaction
    (commit sends, rollback drops); outside one (autocommit) it commits at
    once. ``manage.py apitask_worker`` sends it through
    ``APITASK["EMAIL_BACKEND"]`` (Django's SMTP backend by default).
    """

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue each message; return how many were queued (those with recipients)."""
        from ._outbox import get_outbox

        if not email_messages:
            return 0
        outbox = get_outbox()
        conn = connections[load_settings().database]
        queued = 0
        for message in email_messages:
            job = freeze(message)
            if job is None:
                continue
            try:
                outbox.enqueue_sync(conn, job, allow_autocommit=True)
            except Exception:
                if not self.fail_silently:
                    raise
                continue
            queued += 1
        return queued

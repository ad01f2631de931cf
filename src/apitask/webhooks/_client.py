"""The HTTP client that POSTs signed webhooks (needs the ``webhooks`` extra: httpx).

One httpx transport per client object, so connections to a receiver are
pooled and reused across webhooks. Every step has a deadline: connecting,
writing, waiting for the answer, reading it, waiting for a free pooled
connection, and the whole attempt. Redirects are not followed (a signed
body is for the URL that was configured).

Requests go to the transport, not through an :class:`httpx.AsyncClient`:
the client logs every request's full URL at INFO (``HTTP Request: POST
https://user:pass@host/path?key=...``), and a receiver's URL may hold a
credential in any of those parts, which is why our own lines name only its
host. The client's other work is not wanted here either: redirects, and a
cookie jar that would send a receiver's cookies back with later webhooks.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

from ._errors import (
    InvalidWebhookError,
    PermanentWebhookError,
    TransientWebhookError,
    WebhookTimeoutError,
)
from ._signing import parse_secret, signature_headers

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from .._types import JSONValue
    from ._webhook import Webhook

__all__ = ["HTTPWebhookClient", "WebhookResponse"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MESSAGE_CHARS = 300  # of the receiver's answer, in an error message and so in logs
_REDACTED = "***"
# The body's strings at least this long are taken out of a receiver's answer: the
# service's one-time codes have 6 or more characters; shorter values (ids like
# "u1", empty fields) would blank out ordinary letters of the answer.
_MIN_ECHOED = 4


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """A receiver's 2xx answer.

    Attributes:
        status: the HTTP status.
        content_type: the ``Content-Type`` header, or ``""``.
        body: the answer's bytes (at most the client's ``max_response_size``).
        sent: the body that was POSTed (not shown in ``repr``): what
            :meth:`redact` takes out of a text.
    """

    status: int
    content_type: str
    body: bytes
    sent: Mapping[str, JSONValue] = field(default_factory=dict, repr=False, compare=False)

    def redact(self, text: str) -> str:
        """``text`` with every string of the sent body replaced by ``***``.

        A ``check`` that raises on an answer which reports a failure builds
        its error text from the answer; that text is logged and stored (an
        outbox job's ``last_error``), and a receiver may echo what it was
        sent (the address, the one-time code): pass what comes from the
        answer through here first, as the client does for a non-2xx answer.
        """
        return _redact(text, self.sent)

    def excerpt(self, text: str) -> str:
        """``text`` made fit for an error message, by the rule the client applies
        to a non-2xx answer: on one line, redacted (see :meth:`redact`) and cut
        to its first 300 characters, with ``...`` when cut.

        Use it for what a ``check`` puts in its error from the answer: the
        error's text goes to one-line logs and to an outbox job's
        ``last_error``, and a receiver may answer with any length and any
        characters.
        """
        return _excerpt(text, self.sent)


class HTTPWebhookClient:
    """Sign and POST :class:`~apitask.webhooks.Webhook` s with httpx.

    Each :meth:`send` is one attempt: it signs with the current time and
    every secret, and classifies the outcome by type, so that a pool or an
    outbox running a :class:`~apitask.webhooks.WebhookTask` retries exactly
    what may pass:

    * 2xx: delivered (then ``check``, if given, reads the answer);
    * 408, 429, 5xx, a timeout, a refused or dropped connection:
      :class:`~apitask.webhooks.TransientWebhookError` (with ``Retry-After``);
    * any other status: :class:`~apitask.webhooks.PermanentWebhookError`
      with the status and the start of the receiver's answer.

    Args:
        secrets: the ``whsec_...`` secrets to sign with (several during a
            rotation: one signature each).
        timeout: seconds for each step (connect, write, read, pool wait) and
            for the whole attempt.
        max_connections: connections kept open per client.
        max_response_size: bytes of an answer read; a longer 2xx answer is a
            permanent error (GoTrue's limit: 200 KiB).
        check: called with every 2xx answer; it may raise (a receiver that
            reports failure in a 200's body).
        user_agent: the ``User-Agent`` header.
        clock: seconds since the epoch (tests pass a fixed clock).

    Raises:
        InvalidWebhookError: no secret, or a malformed one.
        ValueError: a non-positive timeout or size.
    """

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        timeout: float = 5.0,
        max_connections: int = 10,
        max_response_size: int = 200 * 1024,
        check: Callable[[WebhookResponse], None] | None = None,
        user_agent: str = "apitask-webhooks",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets:
            raise InvalidWebhookError("at least one webhook secret is needed to sign")
        if timeout <= 0 or max_connections < 1 or max_response_size < 1:
            raise ValueError("timeout, max_connections and max_response_size must be positive")
        self._keys = [parse_secret(secret) for secret in secrets]
        self.timeout = timeout
        self.max_response_size = max_response_size
        self.check = check
        self.user_agent = user_agent
        self.clock = clock
        self._timeouts = httpx.Timeout(timeout).as_dict()
        self._transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            trust_env=False,  # no TLS settings from the environment
        )

    def __repr__(self) -> str:
        return f"<HTTPWebhookClient with {len(self._keys)} secret(s), timeout {self.timeout:g}s>"

    async def send(self, webhook: Webhook) -> WebhookResponse:
        """POST ``webhook`` once, signed now; return the receiver's 2xx answer.

        Raises:
            WebhookTimeoutError: an attempt step or the whole attempt took too long.
            TransientWebhookError: 408, 429, 5xx, or the connection failed.
            PermanentWebhookError: any other status, or an answer over the size limit.
        """
        content = webhook.content()
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": self.user_agent,
            **signature_headers(self._keys, webhook.id, int(self.clock()), content),
        }
        where = f"webhook {webhook.name} to {webhook.host}"
        try:
            async with asyncio.timeout(self.timeout):
                request = httpx.Request(
                    "POST",
                    webhook.url,
                    headers=headers,
                    content=content,
                    extensions={"timeout": self._timeouts},
                )
                response = await self._transport.handle_async_request(request)
                try:
                    body, complete = await self._read(response)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise WebhookTimeoutError(f"{where}: no answer within {self.timeout:g}s") from exc
        except httpx.TransportError as exc:
            raise TransientWebhookError(f"{where}: {type(exc).__name__}: {exc}") from exc
        return self._classify(webhook, where, response, body, complete)

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        """Up to ``max_response_size`` bytes of the answer, and whether that was all of it."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_response_size:
                return b"".join(chunks)[: self.max_response_size], False
        return b"".join(chunks), True

    def _classify(
        self, webhook: Webhook, where: str, response: httpx.Response, body: bytes, complete: bool
    ) -> WebhookResponse:
        status = response.status_code
        if 200 <= status < 300:
            if not complete:
                raise PermanentWebhookError(
                    f"{where}: the answer is over {self.max_response_size} bytes", status=status
                )
            answer = WebhookResponse(
                status, response.headers.get("content-type", ""), body, webhook.body
            )
            if self.check is not None:
                self.check(answer)
            return answer
        said = _excerpt(body.decode("utf-8", "replace"), webhook.body)
        text = f"{where}: HTTP {status}" + (f": {said}" if said else "")
        if status in {408, 429} or status >= 500:
            raise TransientWebhookError(
                text, status=status, retry_after=_retry_after(response.headers.get("retry-after"))
            )
        raise PermanentWebhookError(text, status=status)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._transport.aclose()


def _excerpt(said: str, sent: Mapping[str, JSONValue]) -> str:
    """The start of what a receiver ``said``, on one line, for an error message.

    The error's text is logged and stored (an outbox job's ``last_error``),
    and a receiver may echo what it was sent (a 422 listing the fields it
    refused, with their values): every string of the ``sent`` body is taken
    out of it, since the body holds the task's data (a one-time code, a
    token hash, an address), as :func:`~apitask.mail.redact_addresses` does
    for an SMTP reply.
    """
    text = _redact(_CONTROL.sub(" ", said).strip(), sent)
    return text[:_MESSAGE_CHARS] + ("..." if len(text) > _MESSAGE_CHARS else "")


def _redact(text: str, sent: Mapping[str, JSONValue]) -> str:
    """``text`` without any string of the ``sent`` body (of ``_MIN_ECHOED`` characters or more)."""
    # Longest first, so that a value holding another is taken out whole.
    for value in sorted(
        {v for v in _strings(sent) if len(v) >= _MIN_ECHOED}, key=len, reverse=True
    ):
        text = text.replace(value, _REDACTED)
    return text


def _strings(value: JSONValue | Mapping[str, JSONValue]) -> Iterator[str]:
    """Every string in a JSON value, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date; else ``None``."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())

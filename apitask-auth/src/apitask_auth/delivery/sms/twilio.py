"""Twilio's Messages API, as GoTrue calls it, through one pooled ``httpx.AsyncClient``.

``POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with Basic
auth (account SID, auth token) and a form: ``To`` (``+`` and the number),
``From`` (``GOTRUE_SMS_TWILIO_MESSAGE_SERVICE_SID``, as GoTrue sends it),
``Channel`` and ``Body``. WhatsApp as GoTrue sends it: both ends prefixed
``whatsapp:`` (the sender only when it is a number), and with
``GOTRUE_SMS_TWILIO_CONTENT_SID`` a content template whose variable ``1`` is
the code instead of a body.

What an answer means for the task (GoTrue returns every error alike; we
sort them, because a pool or an outbox retries only what may pass):

* 200/201 with status ``failed``/``undelivered``: permanent, with Twilio's
  error message and code;
* 429, 5xx, a timeout (of any step, or of the whole call), a refused or
  dropped connection: transient (429's ``Retry-After`` is honoured);
* any other 4xx: permanent, with Twilio's message (GoTrue's wording:
  ``<message> More information: <more_info>``).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

import httpx

from .errors import PermanentSmsError, TransientSmsError

if TYPE_CHECKING:
    from .message import TextMessage

__all__ = ["API_VERSION", "TwilioProvider"]

API_VERSION = "2010-04-01"
# A sender that is a phone number (not a Messaging Service SID) gets the
# channel prefix on WhatsApp, as in GoTrue.
_PHONE = re.compile(r"[1-9][0-9]{1,14}")
# Longest Retry-After we wait for: a provider asking for more is treated as
# a plain transient failure, left to the runner's backoff.
MAX_RETRY_AFTER = 300.0


class TwilioProvider:
    """Send texts through Twilio's Messages API.

    Args:
        account_sid: ``GOTRUE_SMS_TWILIO_ACCOUNT_SID`` (user name of Basic auth).
        auth_token: ``GOTRUE_SMS_TWILIO_AUTH_TOKEN``.
        sender: ``GOTRUE_SMS_TWILIO_MESSAGE_SERVICE_SID`` (the ``From``).
        content_sid: ``GOTRUE_SMS_TWILIO_CONTENT_SID``: WhatsApp content template.
        base_url: where the API is (``GOTRUE_SMS_TWILIO_API_BASE_URL``, ours).
        timeout: seconds for each step (connect, write, read, pool wait) and
            for the whole call (``GOTRUE_INTERNAL_HTTP_TIMEOUT``).
        max_connections: the connection pool's size.
    """

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        content_sid: str | None = None,
        base_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        max_connections: int = 20,
    ) -> None:
        self.sender = sender
        self.content_sid = content_sid
        self.timeout = timeout
        self.url = f"{base_url.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        self._auth = (account_sid, auth_token)
        self._max_connections = max_connections
        # Made on first use, on the loop that sends (the app's, or a worker
        # command's), and made again after aclose (a lifespan run again).
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled HTTP client (created on first use)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                auth=self._auth,
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(
                    max_connections=self._max_connections,
                    max_keepalive_connections=self._max_connections,
                ),
                follow_redirects=False,
            )
        return self._client

    def form(self, message: TextMessage) -> dict[str, str]:
        """The form GoTrue posts for ``message``."""
        to, sender = f"+{message.to}", self.sender
        if message.channel == "sms":
            return {"To": to, "Channel": "sms", "From": sender, "Body": message.text}
        if _PHONE.fullmatch(sender.removeprefix("+").replace(" ", "")):
            sender = f"whatsapp:{sender}"
        form = {"To": f"whatsapp:{to}", "Channel": "whatsapp", "From": sender}
        if self.content_sid is not None and message.code is not None:
            form["ContentSid"] = self.content_sid
            form["ContentVariables"] = json.dumps({"1": message.code})
        else:
            form["Body"] = message.text
        return form

    async def send(self, message: TextMessage) -> str:
        """Post ``message``; return Twilio's message SID.

        Raises:
            TransientSmsError: 429, 5xx, a timeout, a connection refused or dropped.
            PermanentSmsError: another 4xx, or a message Twilio says failed.
        """
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.client.post(self.url, data=self.form(message))
        except TimeoutError:
            raise TransientSmsError(f"Twilio did not answer within {self.timeout:g} s") from None
        except httpx.TimeoutException as exc:
            raise TransientSmsError(f"Twilio timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise TransientSmsError(f"Twilio connection failed: {reason}") from None
        try:
            return _verdict(response)
        except PermanentSmsError as exc:
            # Twilio's messages quote the number; logs and dead letters must not.
            raise PermanentSmsError(_masked(str(exc), message)) from None
        except TransientSmsError as exc:
            raise TransientSmsError(
                _masked(str(exc), message), retry_after=exc.retry_after
            ) from None

    async def aclose(self) -> None:
        """Close the pooled connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _masked(reason: str, message: TextMessage) -> str:
    return reason.replace(f"+{message.to}", message.masked).replace(message.to, message.masked)


def _verdict(response: httpx.Response) -> str:
    status = response.status_code
    body = _json(response)
    if status in (200, 201):
        if body.get("status") in ("failed", "undelivered"):
            raise PermanentSmsError(
                f"twilio error: {body.get('error_message')} {body.get('error_code')} "
                f"for message {body.get('sid')}"
            )
        return str(body.get("sid", ""))
    reason = _reason(status, body)
    if status == 429:
        raise TransientSmsError(reason, retry_after=_retry_after(response))
    if status >= 500:
        raise TransientSmsError(reason)
    raise PermanentSmsError(reason)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _reason(status: int, body: dict[str, Any]) -> str:
    message = body.get("message")
    if not isinstance(message, str) or not message:
        return f"Twilio answered HTTP {status}"
    # GoTrue's error text: Twilio's message and its documentation link.
    return f"Twilio answered HTTP {status}: {message} More information: {body.get('more_info', '')}"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds <= MAX_RETRY_AFTER else None

"""The remote e-mail validation service, asked as GoTrue asks it: fail open.

``POST {"email": address}`` as JSON; only a 2xx answer whose JSON object
says ``"valid": false`` refuses the address. Network errors, timeouts,
other statuses, undecodable bodies and a missing ``valid`` key all let it
pass: a validation service that is down must not stop sign-ups.

The mail extra has no HTTP client, and one POST per sign-up does not need
one: the request runs with :mod:`urllib.request` in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from typing import TYPE_CHECKING

from .._headers import check_header_text

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["ValidationService"]

logger = logging.getLogger("apitask.mail")

# GoTrue reads 32 bytes, which silently passes any answer longer than
# {"valid": false}; a few KiB holds a real service's answer with a reason.
_MAX_BODY = 4096


class ValidationService:
    """A client for GoTrue's e-mail validation service protocol.

    Args:
        url: where to POST (``GOTRUE_MAILER_EMAIL_VALIDATION_SERVICE_URL``).
        headers: extra request headers
            (``GOTRUE_MAILER_EMAIL_VALIDATION_SERVICE_HEADERS``); a list of
            values sends the last one, as GoTrue's ``Header.Set`` loop does.
        timeout: seconds for the whole request.

    Raises:
        ValueError: the URL is not http(s), or a header carries a line break.
    """

    __slots__ = ("headers", "timeout", "url")

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str | Sequence[str]] | None = None,
        timeout: float = 3.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"validation service URL must be http(s), got {url!r}")
        self.url = url
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        for name, value in (headers or {}).items():
            last = value if isinstance(value, str) else (value[-1] if value else None)
            if last is not None:
                check_header_text(f"validation service header name {name!r}", name)
                self.headers[name] = check_header_text(f"validation service header {name}", last)

    async def is_valid(self, address: str) -> bool:
        """``False`` only when the service answered that ``address`` is invalid."""
        try:
            body = await asyncio.to_thread(self._post, address)
            answer = json.loads(body)
        except Exception as exc:  # fail open: the service is not the judge today
            logger.warning(
                "mail: e-mail validation service %s failed (%s): address accepted",
                self.url,
                exc,
                extra={"action": "mail"},
            )
            return True
        return not (isinstance(answer, dict) and answer.get("valid") is False)

    def _post(self, address: str) -> bytes:
        request = urllib.request.Request(
            self.url,
            data=json.dumps({"email": address}).encode(),
            headers=self.headers,
            method="POST",
        )
        # urlopen raises HTTPError for statuses it does not follow (4xx, 5xx).
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body: bytes = response.read(_MAX_BODY + 1)
        if len(body) > _MAX_BODY:
            raise ValueError(f"answer longer than {_MAX_BODY} bytes")
        return body

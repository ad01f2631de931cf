"""One webhook: where it goes, its id, and the JSON body it carries (never a secret)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import InvalidWebhookError
from ._signing import check_webhook_id

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._types import JSONValue

__all__ = ["Webhook"]

# A task type ends with the name, so it is a label: short, lower case, no spaces.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HTTP_URL = re.compile(r"https?://[^/\s?#]+[^\s]*")


@dataclass(frozen=True, slots=True)
class Webhook:
    """A JSON body to POST to ``url``, identified by ``id`` on every attempt.

    The id is fixed when the webhook is made, so every attempt, in any
    process, carries the same ``webhook-id`` and the receiver can drop the
    copies a retry brings (what the Message-ID does for a mail). The
    signature is not part of it: each attempt signs with a fresh timestamp,
    with secrets the sending client holds.

    Use :meth:`create` for a new webhook; the constructor checks every field.

    Attributes:
        name: what the webhook is (``"send-email"``): the task type is
            ``"webhook.<name>"``, a label for logs and metrics.
        url: the receiver, ``http://`` or ``https://``.
        id: the ``webhook-id``.
        body: the JSON object sent.
    """

    name: str
    url: str
    id: str
    body: Mapping[str, JSONValue]

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise InvalidWebhookError(
                f"a webhook name must be 1 to 64 lower-case letters, digits, '.', '_' or '-' "
                f"starting with a letter or digit: {self.name!r}"
            )
        if not _HTTP_URL.fullmatch(self.url):
            raise InvalidWebhookError(f"a webhook url must be an http(s) URL: {self.url!r}")
        check_webhook_id(self.id)
        if not isinstance(self.body, dict):
            raise InvalidWebhookError(f"a webhook body must be a JSON object: {self.body!r}")
        self.content()  # not serialisable: fail here, not in a worker later

    @classmethod
    def create(
        cls, name: str, url: str, body: Mapping[str, JSONValue], *, id: str | None = None
    ) -> Webhook:
        """A new webhook; its id is a fresh UUID (GoTrue's format) unless given."""
        return cls(name, url, id if id is not None else str(uuid.uuid4()), body)

    @property
    def host(self) -> str:
        """The receiver's host: what logs show (a URL's path or query may hold a token)."""
        return self.url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]

    def content(self) -> bytes:
        """The bytes sent and signed: compact UTF-8 JSON, the same for every attempt.

        Raises:
            InvalidWebhookError: the body is not JSON-serialisable.
        """
        try:
            text = json.dumps(self.body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidWebhookError(f"a webhook body must be JSON: {exc}") from None
        return text.encode()

    def to_dict(self) -> dict[str, JSONValue]:
        """The stored form (an outbox payload): name, url, id and body."""
        return {"name": self.name, "url": self.url, "id": self.id, "body": dict(self.body)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Webhook:
        """Rebuild a webhook from :meth:`to_dict`'s output, checking it again.

        Raises:
            InvalidWebhookError: a field is missing, of the wrong type, or invalid.
        """
        fields: dict[str, Any] = {}
        for key, kind in (("name", str), ("url", str), ("id", str), ("body", dict)):
            value = data.get(key)
            if not isinstance(value, kind):
                raise InvalidWebhookError(
                    f"stored webhook field {key!r} must be a {kind.__name__}, got {value!r}"
                )
            fields[key] = value
        return cls(**fields)

"""apitask.webhooks: signed webhooks (Standard Webhooks) as durable tasks.

:class:`Webhook`, :class:`WebhookTask`, the signing functions and the
errors need nothing; :class:`HTTPWebhookClient` needs the ``webhooks``
extra (``pip install apitask[webhooks]``, for httpx).
"""

from __future__ import annotations

import typing as _typing

from .._exports import lazy_names as _lazy_names
from .._exports import show_public_paths as _show_public_paths
from ._errors import (
    InvalidWebhookError,
    PermanentWebhookError,
    TransientWebhookError,
    WebhookError,
    WebhookTimeoutError,
)
from ._signing import SECRET_PREFIX, check_webhook_id, parse_secret, sign, signature_headers
from ._task import TASK_PREFIX, WebhookClient, WebhookTask, webhook_counters
from ._webhook import Webhook

if _typing.TYPE_CHECKING:  # pragma: no cover - read by type checkers only
    from ._client import HTTPWebhookClient, WebhookResponse

__all__ = [
    "HTTPWebhookClient",
    "InvalidWebhookError",
    "PermanentWebhookError",
    "SECRET_PREFIX",
    "TASK_PREFIX",
    "TransientWebhookError",
    "Webhook",
    "WebhookClient",
    "WebhookError",
    "WebhookResponse",
    "WebhookTask",
    "WebhookTimeoutError",
    "check_webhook_id",
    "parse_secret",
    "sign",
    "signature_headers",
    "webhook_counters",
]

_HTTP_NAMES = frozenset({"HTTPWebhookClient", "WebhookResponse"})


# Lazy, so that the rest works without the webhooks extra (httpx).
__getattr__ = _lazy_names(__name__, dict.fromkeys(_HTTP_NAMES, "._client"), extra="webhooks")


# Reprs, tracebacks and the API docs show apitask.webhooks.Webhook, the path
# users import. The lazy HTTP names get it on first use, in __getattr__.
_show_public_paths(__name__, globals(), (name for name in __all__ if name not in _HTTP_NAMES))

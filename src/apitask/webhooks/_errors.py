"""What can go wrong with a webhook, classified by whether trying again can help.

The pool and the outbox retry exactly the errors that derive from
:class:`apitask.TransientError`: a 429 or 5xx answer, a timeout or a
dropped connection is :class:`TransientWebhookError`; any other answer the
receiver gives is :class:`PermanentWebhookError`, carrying its status and
message; a webhook or secret that can never be sent as given is
:class:`InvalidWebhookError`.
"""

from __future__ import annotations

from .._exceptions import ApitaskError, TransientError

__all__ = [
    "InvalidWebhookError",
    "PermanentWebhookError",
    "TransientWebhookError",
    "WebhookError",
    "WebhookTimeoutError",
]


class WebhookError(ApitaskError):
    """A webhook was not delivered.

    Attributes:
        status: the receiver's HTTP status when it answered, else ``None``.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientWebhookError(WebhookError, TransientError):
    """Delivery failed in a way that may pass: 408, 429, 5xx, a drop, a timeout.

    Attributes:
        retry_after: the seconds the receiver's ``Retry-After`` asked for, if any.
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class WebhookTimeoutError(TransientWebhookError, TimeoutError):
    """The receiver did not answer within the client's timeout."""


class PermanentWebhookError(WebhookError):
    """The receiver refused the webhook (another 4xx, or a redirect); retrying gets the same."""


class InvalidWebhookError(WebhookError, ValueError):
    """A webhook, its stored form or a secret is malformed (the message names the field)."""

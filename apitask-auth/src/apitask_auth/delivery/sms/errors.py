"""How a text's delivery fails: for a while (retried) or for good (dead-lettered)."""

from __future__ import annotations

from apitask import TransientError

__all__ = ["PermanentSmsError", "SmsError", "TransientSmsError"]


class SmsError(Exception):
    """A text message was not sent; the message says why (the provider's words)."""


class TransientSmsError(SmsError, TransientError):
    """The provider could not take the text now (429, 5xx, a timeout, a dropped
    connection): a pool or an outbox retries it with backoff."""


class PermanentSmsError(SmsError):
    """The provider refused the text (a 4xx other than 429, a failed status):
    sending it again gets the same answer, so the outbox dead-letters it."""

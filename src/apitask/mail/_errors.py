"""What can go wrong with a mail, classified by whether trying again can help.

The pool and the outbox retry exactly the errors that derive from
:class:`apitask.TransientError`, so the classification lives in the type:
a 4xx reply, a dropped connection or a timeout is :class:`TransientMailError`;
a 5xx reply is :class:`PermanentMailError`; a message that can never be sent
as built is :class:`InvalidMessageError`.
"""

from __future__ import annotations

from .._exceptions import ApitaskError, TransientError

__all__ = ["InvalidMessageError", "MailError", "PermanentMailError", "TransientMailError"]


class MailError(ApitaskError):
    """A mail was not delivered.

    Attributes:
        code: the SMTP reply code when the server gave one, else ``None``.
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientMailError(MailError, TransientError):
    """Delivery failed in a way that may pass: a 4xx reply, a drop, a timeout."""


class PermanentMailError(MailError):
    """Delivery failed for good: a 5xx reply; retrying sends the same refusal."""


class InvalidMessageError(MailError, ValueError):
    """A message field cannot be put on the wire safely (it names the field)."""

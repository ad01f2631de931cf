"""The no-op client: what GoTrue does when no SMTP host is configured."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._task import log_fields

if TYPE_CHECKING:
    from ._message import Message

__all__ = ["NoopClient"]

logger = logging.getLogger("apitask.mail")


class NoopClient:
    """Drop every mail on purpose, logging what would have been sent.

    GoTrue's behaviour when no SMTP host is configured: sign-ups and
    recoveries succeed, and no mail leaves the process. Each dropped mail is
    logged at INFO on the ``apitask.mail`` logger with its type, the
    recipient's domain and the Message-ID, never the address, the subject
    or the body: a subject template may hold the one-time code
    (``{{ .Token }} is your code``). Building one logs, once, that mail is
    being dropped.

    Args:
        site_url: named in the start-up log line, as GoTrue does.
    """

    __slots__ = ()

    def __init__(self, *, site_url: str | None = None) -> None:
        logger.info(
            "mail: no SMTP host configured%s: mails are logged and dropped (NoopClient)",
            f" for {site_url}" if site_url else "",
            extra={"action": "mail"},
        )

    async def send(self, message: Message) -> None:
        """Log the mail (its type and recipient's domain only) and drop it."""
        logger.info(
            "mail: dropped %s mail to a recipient at %s (no SMTP host configured)",
            message.type,
            message.domain,
            extra=log_fields(message),
        )

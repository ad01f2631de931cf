"""Account-change notifications (§3.17): sent after the change, never failing it.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from apitask_auth.accounts.flows import before_send, deliver
from apitask_auth.delivery.mailer import MailData

if TYPE_CHECKING:
    from apitask_auth.delivery.mailer import Template
    from apitask_auth.http.deps import Service
    from apitask_auth.storage.rows import User

__all__ = ["notification_data", "notify"]

logger = logging.getLogger("apitask_auth")


async def notify(svc: Service, template: Template, to: str, data: MailData, *, user: User) -> None:
    """Send a notification mail about ``user`` in a transaction of its own, after the
    change committed.

    As in GoTrue, any failure (the address not authorized, the global e-mail
    limit, delivery) is logged and the request still succeeds.
    """
    try:
        async with svc.engine.begin() as conn:
            await before_send(conn, svc.settings, [to])
            await deliver(conn, svc.mailer, template, to, data, user=user)
    except Exception:
        # The domain, never the address: logs are kept longer than the account may be.
        domain = to.rpartition("@")[2]
        logger.warning(
            "unable to send %s email to a recipient at %s",
            template,
            domain,
            exc_info=True,
            extra={"action": "mail", "mail_type": str(template), "recipient_domain": domain},
        )


def notification_data(
    svc: Service, email: str, metadata: dict[str, Any], old_email: str = ""
) -> MailData:
    """The template data of a notification: Email, SiteURL, Data (and OldEmail)."""
    return MailData(email=email, data=dict(metadata), old_email=old_email)

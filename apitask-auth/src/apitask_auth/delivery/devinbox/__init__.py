"""Dev inbox: an embedded SMTP catcher and the ``/_dev/inbox`` pages that show its mail.

Mounted by the service in dev mode only (see docs/dev-inbox.md)::

    from apitask_auth.delivery.devinbox import DevInbox

    inbox = DevInbox(max_messages=500)
    app.include_router(inbox.router)
    host, port = await inbox.start()  # in the app's lifespan
"""

from __future__ import annotations

from ._inbox import DevInbox
from ._message import CaughtMessage

__all__ = ["CaughtMessage", "DevInbox"]

"""Addresses out of text that is logged or stored: SMTP replies, error messages.

Mail servers echo the recipient in their replies (Postfix: ``550 5.1.1
<victim@example.com>: Recipient address rejected``; sendmail: ``550 5.1.1
victim... User unknown``). A reply becomes an error's text, which is logged
and stored as an outbox job's ``last_error``: there, an address is personal
data that outlives the mail. :func:`redact_addresses` keeps the reply's code,
enhanced status and wording, and the domain (what every log line about a
mail shows), and drops every local part.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact_addresses"]

REDACTED = "***"
"""What stands for a local part that was removed."""

# Anything shaped like local@domain: no white space, angle brackets or quotes
# on either side. Wider than a valid address on purpose: a reply is no
# place to be strict.
_ADDRESS = re.compile(r"""[^\s<>"'(),;:@\[\]]+@([^\s<>"'(),;@\[\]]*)""")


def redact_addresses(text: str, *, local_part: str | None = None) -> str:
    """``text`` with the local part of every address replaced by :data:`REDACTED`.

    Args:
        text: an SMTP reply, an error message.
        local_part: the recipient's local part, also removed where it stands
            alone (``victim... User unknown``), compared case-insensitively.
    """
    text = _ADDRESS.sub(lambda match: f"{REDACTED}@{match[1]}", text)
    if local_part:
        # Alone means not inside a longer word: "ann" goes, "annual" stays.
        alone = re.compile(rf"(?<![\w.+-]){re.escape(local_part)}(?![\w+-]|\.\w)", re.IGNORECASE)
        text = alone.sub(REDACTED, text)
    return text

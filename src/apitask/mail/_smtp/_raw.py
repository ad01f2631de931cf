"""The envelope of a message rendered elsewhere (by Django, say): bytes and addresses.

:meth:`SMTPClient.send_raw` sends bytes it did not write, to several
recipients. The bytes are taken as they are (the headers are the caller's);
the envelope addresses are checked as strictly as a :class:`Message`'s, since
they go on the wire as commands: a display name (``Name <addr>``) is dropped,
the domain is written in IDNA form, and an address with a non-ASCII local
part makes the mail need SMTPUTF8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import InvalidMessageError
from ._mime import _wire_address, split_mailbox

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["RawEnvelope", "raw_envelope"]


@dataclass(frozen=True, slots=True)
class RawEnvelope:
    """What goes on the wire for prepared bytes: one sender, several recipients."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    smtputf8: bool


def raw_envelope(sender: str, recipients: Sequence[str], data: bytes) -> RawEnvelope:
    """Check and normalise the envelope of ``data``.

    Raises:
        InvalidMessageError: no recipient, no bytes, or an address that is not
            one plain address (the error does not repeat a recipient's address).
    """
    if isinstance(recipients, str):
        raise InvalidMessageError("recipients must be a sequence of addresses, not one string")
    if not recipients:
        raise InvalidMessageError("a mail needs at least one recipient")
    if not data:
        raise InvalidMessageError("the message bytes are empty")
    wire_sender, smtputf8 = _wire_address("sender", split_mailbox("sender", sender)[1])
    wire: list[str] = []
    for recipient in recipients:
        address, needs = _wire_address("recipient", split_mailbox("recipient", recipient)[1])
        wire.append(address)
        smtputf8 = smtputf8 or needs
    return RawEnvelope(wire_sender, tuple(wire), bytes(data), smtputf8)

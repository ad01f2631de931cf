"""redact_addresses: SMTP replies and error texts keep their wording, lose the addresses."""

from __future__ import annotations

import aiosmtplib
import pytest

from apitask.mail import PermanentMailError, TransientMailError, redact_addresses
from apitask.mail._smtp._errors import mail_error


@pytest.mark.parametrize(
    ("text", "local_part", "redacted"),
    [
        (
            "5.1.1 <ann@example.com>: Recipient address rejected",
            None,
            "5.1.1 <***@example.com>: Recipient address rejected",
        ),
        ("RCPT TO:<ann.lee+x@example.com> refused", None, "RCPT TO:<***@example.com> refused"),
        (
            'from "ann@a.example", to bob@b.example.',
            None,
            'from "***@a.example", to ***@b.example.',
        ),
        ("user@[192.0.2.1] unknown", None, "***@[192.0.2.1] unknown"),
        ("ann... User unknown", "ann", "***... User unknown"),
        ("No such user: ANN", "ann", "No such user: ***"),
        ("annual quota: ann is over it", "ann", "annual quota: *** is over it"),
        ("ann.lee... unknown; ann.leeway ok", "ann.lee", "***... unknown; ann.leeway ok"),
        ("mailbox ann.lee.x unknown", "ann.lee", "mailbox ann.lee.x unknown"),
        ("nothing to hide", "ann", "nothing to hide"),
        ("nothing to hide", "", "nothing to hide"),
    ],
)
def test_redact_addresses(text: str, local_part: str | None, redacted: str) -> None:
    assert redact_addresses(text, local_part=local_part) == redacted


def test_a_reply_without_a_known_recipient_still_loses_its_addresses() -> None:
    """A refusal at connect time (no recipient yet) still goes through the address rule."""
    refused = aiosmtplib.SMTPResponseException(554, "5.7.1 <postmaster@mx.example> says no")
    error = mail_error(refused, "connecting to mx.example:25")
    assert isinstance(error, PermanentMailError)
    assert str(error) == (
        "SMTP server refused connecting to mx.example:25: 554 5.7.1 <***@mx.example> says no"
    )
    later = mail_error(
        aiosmtplib.SMTPResponseException(451, "ann: try later"), "RCPT TO", "ann@x.example"
    )
    assert isinstance(later, TransientMailError)
    assert str(later) == "SMTP server refused RCPT TO: 451 ***: try later"

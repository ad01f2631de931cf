"""Standard Webhooks signing, checked against the reference implementation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
import standardwebhooks

from apitask.webhooks import (
    InvalidWebhookError,
    check_webhook_id,
    parse_secret,
    sign,
    signature_headers,
)

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()


def test_a_signature_is_what_the_reference_library_computes() -> None:
    body = b'{"user":{"id":"1"},"sms":{"otp":"123456"}}'
    expected = standardwebhooks.Webhook(SECRET).sign(
        "msg_1", datetime.fromtimestamp(1_700_000_000, UTC), body
    )
    assert sign([parse_secret(SECRET)], "msg_1", 1_700_000_000, body) == expected


def test_several_secrets_give_space_separated_signatures_each_verifiable() -> None:
    """During a rotation the receiver may hold either secret (the spec's separator: a space)."""
    keys = [parse_secret(SECRET), parse_secret(OTHER)]
    now = int(datetime.now(UTC).timestamp())
    headers = signature_headers(keys, "msg_2", now, b"{}")
    assert headers["webhook-id"] == "msg_2"
    assert headers["webhook-timestamp"] == str(now)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OTHER):
        assert standardwebhooks.Webhook(secret).verify(b"{}", headers) == {}


def test_unpadded_base64_is_accepted() -> None:
    assert parse_secret(SECRET.rstrip("=")) == KEY


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("v1,whsec_abc", "must start with 'whsec_'"),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_not base64!", "must be base64"),
        ("whsec_", "must be base64"),
        ("whsec_" + "A" * 21, "must be base64"),  # 21 characters: no valid padding
        ("whsec_" + base64.b64encode(b"short").decode(), "at least 16 bytes, got 5"),
    ],
)
def test_a_malformed_secret_is_refused_without_echoing_it(secret: str, reason: str) -> None:
    with pytest.raises(InvalidWebhookError, match=reason) as raised:
        parse_secret(secret)
    assert secret[6:] not in str(raised.value) or not secret[6:]


def test_signing_needs_a_key() -> None:
    with pytest.raises(InvalidWebhookError, match="at least one webhook secret"):
        sign([], "msg", 1, b"")


@pytest.mark.parametrize("webhook_id", ["", "a b", "a,b", "é", "x" * 256, "a\nb"])
def test_a_webhook_id_must_be_header_safe(webhook_id: str) -> None:
    with pytest.raises(InvalidWebhookError, match="webhook id"):
        check_webhook_id(webhook_id)


def test_a_uuid_or_msg_id_is_a_valid_webhook_id() -> None:
    for webhook_id in ("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "0b9f3c52-9f0e-4b57-a1a4-7fbb0ad0e8f2"):
        assert check_webhook_id(webhook_id) == webhook_id

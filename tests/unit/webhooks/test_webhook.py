"""Webhook: a checked value object whose stored form rebuilds it exactly."""

from __future__ import annotations

import uuid

import pytest

from apitask.webhooks import InvalidWebhookError, Webhook


def hook() -> Webhook:
    return Webhook.create("send-email", "https://hooks.example.com/auth?key=k", {"a": [1, "é"]})


def test_create_gives_a_fresh_uuid_and_the_same_bytes_every_time() -> None:
    first, second = hook(), hook()
    assert first.id != second.id
    assert str(uuid.UUID(first.id)) == first.id
    assert first.content() == second.content() == '{"a":[1,"é"]}'.encode()


def test_an_explicit_id_is_kept() -> None:
    webhook = Webhook.create("n", "http://127.0.0.1:8/x", {}, id="msg_1")
    assert webhook.id == "msg_1"


def test_the_stored_form_rebuilds_an_equal_webhook() -> None:
    webhook = hook()
    assert Webhook.from_dict(webhook.to_dict()) == webhook
    assert webhook.to_dict() == {
        "name": "send-email",
        "url": "https://hooks.example.com/auth?key=k",
        "id": webhook.id,
        "body": {"a": [1, "é"]},
    }


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://hooks.example.com/auth?key=k", "hooks.example.com"),
        ("http://user:pw@127.0.0.1:8080", "127.0.0.1:8080"),
        ("https://h.example?token=t", "h.example"),
    ],
)
def test_the_host_is_what_logs_show(url: str, host: str) -> None:
    assert Webhook.create("n", url, {}).host == host


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"name": "Send Email"}, "webhook name"),
        ({"name": ""}, "webhook name"),
        ({"url": "ftp://x"}, "http\\(s\\) URL"),
        ({"url": "https://"}, "http\\(s\\) URL"),
        ({"id": "a b"}, "webhook id"),
        ({"body": ["not", "an", "object"]}, "JSON object"),
        ({"body": {"x": float("nan")}}, "must be JSON"),
        ({"body": {"x": object()}}, "must be JSON"),
    ],
)
def test_every_field_is_checked(fields: dict[str, object], reason: str) -> None:
    values: dict[str, object] = {"name": "n", "url": "https://h.example/", "id": "i", "body": {}}
    with pytest.raises(InvalidWebhookError, match=reason):
        Webhook(**{**values, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize("missing", ["name", "url", "id", "body"])
def test_a_stored_form_with_a_missing_or_mistyped_field_is_refused(missing: str) -> None:
    data = hook().to_dict()
    del data[missing]
    with pytest.raises(InvalidWebhookError, match=f"field '{missing}'"):
        Webhook.from_dict(data)
    with pytest.raises(InvalidWebhookError, match=f"field '{missing}'"):
        Webhook.from_dict({**data, missing: 7})

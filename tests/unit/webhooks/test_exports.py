"""apitask.webhooks' public surface is exactly its __all__, shown under its public path."""

from __future__ import annotations

import types

import pytest

import apitask.webhooks


def test_all_is_exact_and_every_class_shows_the_public_module() -> None:
    public = {
        name
        for name, value in vars(apitask.webhooks).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(apitask.webhooks.__all__) - {"HTTPWebhookClient", "WebhookResponse"} == (
        public - {"annotations"}
    )
    for name in apitask.webhooks.__all__:
        value = getattr(apitask.webhooks, name)
        if isinstance(value, type | types.FunctionType):
            assert value.__module__ == "apitask.webhooks", name
    assert repr(apitask.webhooks.HTTPWebhookClient) == (
        "<class 'apitask.webhooks.HTTPWebhookClient'>"
    )


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        apitask.webhooks.Nope  # noqa: B018

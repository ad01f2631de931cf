"""APITASK["EMAIL_BACKEND"] = "apitask.mail.SMTPClient": the worker sends the frozen
bytes through apitask's pooled client, against a real SMTP server."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import pytest

from .test_django_app import queue_directly, rich_message, run_worker

if TYPE_CHECKING:
    from pathlib import Path

    from smtp_sink import Sink

POOLED = {"EMAIL_BACKEND": "apitask.mail.SMTPClient"}


def test_the_worker_sends_the_frozen_bytes_through_the_pooled_client(
    django_db: Path, sink: Sink
) -> None:
    from django.test import override_settings

    from apitask.contrib.django import _pooled
    from apitask.contrib.django._mail import freeze

    jobs = [freeze(rich_message(**{"Message-ID": f"<p{n}@djsite.test>"})) for n in range(3)]
    for job in jobs:
        queue_directly(job)
    with override_settings(EMAIL_PORT=sink.port, APITASK=POOLED):
        run_worker("--concurrency", "2")
    assert sink.wait_for(3)
    assert sorted(bytes(e.original_content).rstrip() for e in sink.handler.envelopes) == sorted(
        job.data.rstrip() for job in jobs if job is not None
    )
    for envelope in sink.handler.envelopes:
        assert envelope.mail_from == "bank@djsite.test"
        assert envelope.rcpt_tos == ["ann@example.test", "bob@example.test", "audit@example.test"]
    assert _pooled._client is None  # the worker closed it on the way out
    _pooled.set_pool_size(None)


def test_pooled_sends_keep_the_error_classes(
    django_db: Path, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    """4xx is transient (retried), 5xx permanent (dead at once); a recipient refused
    among accepted ones is logged, not retried (the others have the mail)."""
    from django.core.mail import EmailMessage
    from django.test import override_settings

    from apitask import TransientError
    from apitask.contrib.django import _pooled
    from apitask.contrib.django._mail import freeze
    from apitask.mail import PermanentMailError

    job = freeze(EmailMessage("s", "b", "a@djsite.test", ["to@example.test", "no@example.test"]))
    assert job is not None

    async def scenario() -> None:
        client = _pooled.pooled_client()
        assert _pooled.pooled_client() is client  # one per loop
        sink.fail_next("451 4.3.0 try later")
        with pytest.raises(TransientError, match="451"):
            await job.run()
        sink.fail_next("554 5.6.0 no")
        with pytest.raises(PermanentMailError, match="554") as caught:
            await job.run()
        assert not isinstance(caught.value, TransientError)
        sink.handler.refuse["no@example.test"] = "550 5.1.1 no such user"
        await job.run()
        await _pooled.close_client()
        await _pooled.close_client()  # twice is harmless

    with (
        override_settings(EMAIL_PORT=sink.port, EMAIL_TIMEOUT=None, APITASK=POOLED),
        caplog.at_level(logging.WARNING, "apitask.contrib.django"),
    ):
        asyncio.run(scenario())
    assert [e.rcpt_tos for e in sink.handler.envelopes] == [["to@example.test"]]
    assert "1 of 2 recipients refused" in caplog.text
    assert "no@example.test" not in caplog.text


def test_the_client_follows_djangos_email_settings(django_db: Path) -> None:
    from django.test import override_settings

    from apitask.contrib.django._pooled import smtp_options

    with override_settings(
        EMAIL_USE_SSL=True, EMAIL_HOST_USER="u", EMAIL_HOST_PASSWORD="p", EMAIL_TIMEOUT=None
    ):
        options = smtp_options()
    assert (options["tls"], options["username"], options["password"]) == ("implicit", "u", "p")
    assert options["timeout"] == 30.0
    with override_settings(EMAIL_USE_TLS=True, EMAIL_HOST_PASSWORD="p"):
        options = smtp_options()
    assert (options["tls"], options["username"], options["password"]) == ("starttls", None, None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"EMAIL_USE_TLS": True, "EMAIL_USE_SSL": True}, "EMAIL_USE_TLS and EMAIL_USE_SSL"),
        ({"EMAIL_SSL_CERTFILE": "/c.pem"}, "EMAIL_SSL_CERTFILE (a client certificate)"),
        ({"EMAIL_TIMEOUT": 0}, "EMAIL_TIMEOUT must be a positive number, got 0"),
        ({"EMAIL_TIMEOUT": True}, "EMAIL_TIMEOUT must be a positive number, got True"),
        ({"EMAIL_TIMEOUT": "5"}, "EMAIL_TIMEOUT must be a positive number, got '5'"),
        ({"DEFAULT_FROM_EMAIL": "two@a.test, b@c.test"}, "DEFAULT_FROM_EMAIL:"),
    ],
)
def test_email_settings_it_cannot_honour_stop_the_start(
    django_db: Path, overrides: dict[str, object], message: str
) -> None:
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    with (
        override_settings(APITASK=POOLED, **overrides),
        pytest.raises(ImproperlyConfigured) as caught,
    ):
        apps.get_app_config("apitask").ready()
    assert message in str(caught.value)


def test_without_the_mail_extra_the_setting_names_it(
    django_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from django.core.exceptions import ImproperlyConfigured

    from apitask.contrib.django._pooled import smtp_options

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImproperlyConfigured, match=r"install apitask\[mail\]"):
        smtp_options()

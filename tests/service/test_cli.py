"""The command line: migrate, configuration errors, the outbox worker."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from aiosmtpd.controller import Controller

from apitask.mail import MailTask, Message, NoopClient
from apitask.outbox import open_outbox
from apitask.outbox._sql import load_migrations
from apitask.webhooks import HTTPWebhookClient, Webhook, WebhookTask
from apitask_auth.accounts.jwt_keys import JWTKeys
from apitask_auth.cli import main
from apitask_auth.delivery.devinbox import DevInbox
from apitask_auth.delivery.sms import SmsTask, TextMessage
from apitask_auth.delivery.sms.devinbox import DevInboxProvider
from apitask_auth.storage.migrations import MIGRATIONS
from integration.webhooks.receiver import OTHER_SECRET, Receiver
from integration.webhooks.receiver import SECRET as HOOK_SECRET

from ._twilio import twilio_in_thread

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A complete configuration pointing at a fresh SQLite file."""
    database = tmp_path / "auth.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("GOTRUE_SITE_URL", "http://localhost:3000")
    monkeypatch.setenv("API_EXTERNAL_URL", "http://localhost:9999")
    monkeypatch.setenv("GOTRUE_JWT_SECRET", "s" * 32)
    return database


@pytest.mark.no_blockbuster  # a CLI test: the command runs its own event loop
def test_migrate_creates_the_schema_once(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`apitask-auth migrate` applies the service's schema (versions 1 to 4) and the
    outbox's, then reports nothing to do."""
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"auth: applied migrations: {[version for version, _, _ in MIGRATIONS]}",
        f"outbox: applied migrations: {[m.version for m in load_migrations('sqlite')]}",
    ]
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "auth: applied migrations: none (schema is current)",
        "outbox: applied migrations: none (schema is current)",
    ]
    with sqlite3.connect(env) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
    assert {"users", "identities", "one_time_tokens", "sessions", "refresh_tokens"} <= tables
    assert {"flow_state", "audit_log_entries", "schema_migrations", "verify_attempts"} <= tables
    assert {"apitask_jobs", "apitask_migrations"} <= tables


def test_configuration_error_exits_2(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad variable is one clear line naming it, and exit status 2."""
    monkeypatch.setenv("GOTRUE_JWT_EXP", "soon")
    assert main(["serve"]) == 2
    assert "configuration error: GOTRUE_JWT_EXP:" in capsys.readouterr().err


class _Catcher:
    """aiosmtpd handler: keeps what arrives (the server runs in its own thread)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((session.host_name, envelope.mail_from, envelope.content))
        return "250 OK"


@pytest.mark.no_blockbuster  # a CLI test: the command runs its own event loop
def test_worker_sends_the_queued_mail_through_smtp(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`apitask-auth worker` sends what `serve` queued in outbox mode to GOTRUE_SMTP_HOST,
    from GOTRUE_SMTP_SENDER_NAME <GOTRUE_SMTP_ADMIN_EMAIL>, with the API host as EHLO name."""
    catcher = _Catcher()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(catcher, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        monkeypatch.setenv("GOTRUE_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("GOTRUE_SMTP_PORT", str(port))
        monkeypatch.setenv("GOTRUE_SMTP_ADMIN_EMAIL", "auth@example.com")
        monkeypatch.setenv("GOTRUE_SMTP_SENDER_NAME", "Example Auth")
        assert main(["migrate"]) == 0
        message = Message(to="zoe@example.com", subject="Hi", text="queued", type="recovery")

        async def enqueue() -> None:
            async with open_outbox(f"sqlite:///{env}") as outbox:
                await outbox.enqueue(None, MailTask(message, NoopClient()))

        asyncio.run(enqueue())
        assert main(["worker", "--until-empty", "--no-migrate"]) == 0
    finally:
        smtp.stop()
    ((ehlo, sender, content),) = catcher.received
    assert (ehlo, sender) == ("localhost", "auth@example.com")
    assert b"From: Example Auth <auth@example.com>" in content
    assert message.message_id.encode() in content


def test_worker_in_dev_mode_needs_an_smtp_host(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dev inbox lives in `serve --dev`: a dev worker elsewhere would drop mail: refused."""
    assert main(["worker", "--dev"]) == 2
    assert "configuration error: GOTRUE_SMTP_HOST: required" in capsys.readouterr().err


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_keys_generate_prints_a_key_set_the_service_accepts(
    alg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "generate", "--alg", alg]) == 0
    printed = capsys.readouterr().out
    [key] = json.loads(printed)
    assert (key["alg"], key["key_ops"]) == (alg, ["sign", "verify"])
    keys = JWTKeys.parse(printed, "a-secret-of-at-least-thirty-two-characters")
    assert jwt.get_unverified_header(keys.sign({"sub": "u"}))["kid"] == key["kid"]
    assert main(["keys", "generate", "--alg", alg]) == 0
    assert json.loads(capsys.readouterr().out)[0]["kid"] != key["kid"]


@pytest.mark.no_blockbuster  # a CLI test: the command runs its own event loop
def test_worker_sends_the_queued_texts_through_twilio(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`apitask-auth worker` sends stored sms.* jobs through GOTRUE_SMS_PROVIDER."""
    with twilio_in_thread() as twilio:
        for name, value in twilio.settings().items():
            monkeypatch.setenv(f"GOTRUE_{name.upper()}", value)
        assert main(["migrate"]) == 0
        text = TextMessage(to="15550001111", text="Your code is 123456")

        async def enqueue() -> None:
            async with open_outbox(f"sqlite:///{env}") as outbox:
                await outbox.enqueue(None, SmsTask(text, DevInboxProvider(DevInbox())))

        asyncio.run(enqueue())
        assert main(["worker", "--until-empty", "--no-migrate"]) == 0
    assert twilio.texts_to("15550001111") == ["Your code is 123456"]


@pytest.mark.no_blockbuster  # a CLI test: the command runs its own event loop
def test_worker_calls_the_send_hook_with_the_secret_of_its_own_configuration(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored webhook.send-email job holds no secret: the worker's settings sign it."""
    with Receiver() as receiver:
        monkeypatch.setenv("GOTRUE_HOOK_SEND_EMAIL_ENABLED", "true")
        monkeypatch.setenv("GOTRUE_HOOK_SEND_EMAIL_URI", receiver.url)
        monkeypatch.setenv("GOTRUE_HOOK_SEND_EMAIL_SECRETS", f"v1,{HOOK_SECRET}")
        assert main(["migrate"]) == 0
        webhook = Webhook.create("send-email", receiver.url, {"email_data": {"token": "1"}})

        async def enqueue() -> None:
            unsigned = HTTPWebhookClient([OTHER_SECRET])  # never used: only the job is stored
            async with open_outbox(f"sqlite:///{env}") as outbox:
                await outbox.enqueue(None, WebhookTask(webhook, unsigned))
            await unsigned.aclose()

        asyncio.run(enqueue())
        assert main(["worker", "--until-empty", "--no-migrate"]) == 0
    [call] = receiver.requests
    assert call.verified  # with the worker's secret
    assert call.webhook_id == webhook.id

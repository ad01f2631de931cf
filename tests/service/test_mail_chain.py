"""Settings -> mail chain: the transport, the From address, EHLO name, extra headers, logging."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pytest

from apitask.mail import MailData, Message, SMTPClient
from apitask_auth.config import load_settings
from apitask_auth.delivery.devinbox import DevInbox
from apitask_auth.delivery.mail_chain import MailChain, message_id_domain, sender, transport_for
from apitask_auth.delivery.runtime import DeliveryRuntime

from .conftest import email

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .conftest import Service

BASE: dict[str, Any] = {
    "site_url": "http://localhost:3000",
    "api_external_url": "https://auth.example.com:8443/auth",
    "jwt_secret": "s" * 32,
}


def test_sender_is_the_name_and_admin_address() -> None:
    """From is "GOTRUE_SMTP_SENDER_NAME <GOTRUE_SMTP_ADMIN_EMAIL>", or the bare address."""
    named = load_settings(
        env_file=None, smtp_admin_email="auth@example.com", smtp_sender_name="Example", **BASE
    )
    assert sender(named) == "Example <auth@example.com>"
    bare = load_settings(env_file=None, smtp_admin_email="auth@example.com", **BASE)
    assert sender(bare) == "auth@example.com"
    dev = load_settings(env_file=None, dev=True, **BASE)
    assert sender(dev) == "apitask-auth dev <noreply@auth.example.com>"


async def test_the_message_id_domain_is_the_from_domain() -> None:
    """One owner: the Message-ID is on the From address's domain, whichever it is."""
    admin = load_settings(env_file=None, smtp_admin_email="auth@mail.example.com", **BASE)
    dev = load_settings(env_file=None, dev=True, **BASE)
    for settings, domain in ((admin, "mail.example.com"), (dev, "auth.example.com")):
        assert message_id_domain(settings) == domain
        assert sender(settings).rstrip(">").endswith(f"@{domain}")
        chain = MailChain(settings, runtime=DeliveryRuntime(settings))
        message = await chain.templates.render("invite", email(), MailData(email=email()))
        assert message.message_id.endswith(f"@{domain}>")


def test_no_smtp_host_outside_dev_mode_drops_mail_as_gotrue_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without GOTRUE_SMTP_HOST the transport is the no-op client, and it says so."""
    with caplog.at_level(logging.INFO):
        client = transport_for(load_settings(env_file=None, **BASE))
    assert type(client).__name__ == "NoopClient"
    assert "no SMTP host configured" in caplog.text


async def test_smtp_transport_sends_from_the_sender_and_logs_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SMTP to the configured server; GOTRUE_SMTP_LOGGING_ENABLED logs a mail.send line."""
    async with DevInbox() as inbox:
        assert inbox.address is not None
        host, port = inbox.address
        settings = load_settings(
            env_file=None,
            smtp_host=host,
            smtp_port=port,
            smtp_admin_email="auth@example.com",
            smtp_sender_name="Example Auth",
            smtp_logging_enabled=True,
            **BASE,
        )
        client = transport_for(settings)
        assert isinstance(client, SMTPClient)
        to = email()
        with caplog.at_level(logging.INFO, logger="apitask.mail.smtp"):
            await client.send(Message(to=to, subject="Hello", text="hi", type="invite"))
        await client.aclose()
        caught = await inbox.wait_for(to=to)
    assert caught.from_ == "Example Auth <auth@example.com>"
    assert caught.envelope_from == "auth@example.com"
    (record,) = [r for r in caplog.records if r.getMessage() == "mail.send"]
    # GoTrue's line names the recipient (mail_to); ours, the domain only.
    assert (record.mail_type, record.recipient_domain) == ("invite", "example.com")  # type: ignore[attr-defined]
    assert to not in str(record.__dict__)
    assert record.mail_from == "auth@example.com"  # type: ignore[attr-defined]


async def test_smtp_headers_are_added_with_the_message_type(
    make_service: Callable[..., Any],
) -> None:
    """GOTRUE_SMTP_HEADERS: every value list joined, $messageType replaced (§4.5)."""
    svc: Service = await make_service(
        smtp_headers='{"X-Mail-Kind": ["$messageType"], "X-Tags": ["a", "b"], "X-Empty": []}'
    )
    address = email()
    await svc.http.post("/signup", json={"email": address, "password": "secret-password"})
    (sent,) = svc.sent
    assert dict(sent.headers) == {"X-Mail-Kind": "confirmation", "X-Tags": "a, b"}
    assert sent.message_id.endswith("@auth.test>")


async def test_sending_before_the_lifespan_started_is_a_clear_error() -> None:
    """The chain starts with the app's lifespan; a send before that says so."""
    settings = load_settings(env_file=None, **BASE)
    chain = MailChain(settings, runtime=DeliveryRuntime(settings))
    data = MailData(email="a@example.com")
    with pytest.raises(RuntimeError, match="mail chain is not started"):
        await chain.send("confirmation", "a@example.com", data, connection=None, user=None)  # type: ignore[arg-type]


async def test_custom_subject_is_rendered_in_the_request(
    make_service: Callable[..., Any],
) -> None:
    """GOTRUE_MAILER_SUBJECTS_<KEY> replaces the default subject (a template itself)."""
    svc: Service = await make_service(mailer_subjects={"confirmation": "Welcome {{ .Email }}"})
    address = email()
    await svc.http.post("/signup", json={"email": address, "password": "secret-password"})
    (sent,) = svc.sent
    assert sent.subject == f"Welcome {address}"


@pytest.mark.parametrize("mode", ["inline", "pool", "outbox"])
async def test_extended_validation_refuses_in_the_request_in_every_mode(
    make_service: Callable[..., Any], mode: str
) -> None:
    """GOTRUE_MAILER_EMAIL_VALIDATION_EXTENDED: a reserved domain is GoTrue's 400
    email_address_invalid, in the request even when delivery is later; nothing is stored."""
    svc: Service = await make_service(mailer_delivery=mode, mailer_email_validation_extended=True)
    address = f"someone-{email()}".replace("@example.com", "@mail.invalid")
    response = await svc.http.post(
        "/signup", json={"email": address, "password": "secret-password"}
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "email_address_invalid"
    listed = await svc.http.get("/admin/users", headers=svc.admin_headers())
    assert address not in {user["email"] for user in listed.json()["users"]}
    assert svc.sent == []


async def test_custom_template_body_from_a_file(
    make_service: Callable[..., Any], tmp_path: Path
) -> None:
    """GOTRUE_MAILER_TEMPLATES_<KEY>: the custom HTML body (here a file) replaces the
    default, and the mail goes without the default text part."""
    template = tmp_path / "confirm.html"
    await asyncio.to_thread(
        template.write_text,
        '<p>Hi {{ .Email }}: <a href="{{ .ConfirmationURL }}">confirm</a></p>',
    )
    svc: Service = await make_service(
        mailer_templates={"confirmation": str(template)}, mailer_template_reloading_enabled=True
    )
    address = email()
    await svc.http.post("/signup", json={"email": address, "password": "secret-password"})
    (sent,) = svc.sent
    assert sent.html.startswith(f'<p>Hi {address}: <a href="http://auth.test/verify?token=')
    assert sent.text == ""

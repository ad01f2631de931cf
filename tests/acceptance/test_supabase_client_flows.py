"""The real ``supabase_auth`` client through the mail flows of part 2 (issue #7).

OTP sign-in, password recovery, resending the confirmation, a secure e-mail
change with both confirmations, and a password change with a reauthentication
nonce, against ``apitask-auth serve`` in each delivery mode. Where an address gets a
second mail, the test says so (``count=2``): in pool and outbox modes it may
arrive after the response.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import jwt
import pytest
from sqlalchemy import create_engine, update
from supabase_auth import SyncGoTrueClient
from supabase_auth.errors import AuthApiError

from apitask_auth.storage.tables import now, sessions

from .conftest import DELIVERY_MODES, Server, start_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PASSWORD = "correct-horse-9"
NEW_PASSWORD = "battery-staple-10"


@dataclass(frozen=True)
class FlowServer:
    """A running server and the SQLite file it keeps its state in."""

    server: Server
    database: Path


@pytest.fixture(scope="module", params=DELIVERY_MODES)
def flows(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlowServer]:
    """Autoconfirm off, a short per-user interval so a test may ask twice, and
    password changes that need a nonce once a session is a day old."""
    tmp = tmp_path_factory.mktemp(f"flows-{request.param}")
    for server in start_server(
        tmp,
        GOTRUE_MAILER_DELIVERY=request.param,
        GOTRUE_SMTP_MAX_FREQUENCY="1us",
        GOTRUE_RATE_LIMIT_EMAIL_SENT="1000",
        GOTRUE_SECURITY_UPDATE_PASSWORD_REQUIRE_REAUTHENTICATION="true",
    ):
        yield FlowServer(server, tmp / "auth.db")


@pytest.fixture
def client(flows: FlowServer) -> Iterator[SyncGoTrueClient]:
    with SyncGoTrueClient(url=flows.server.url, auto_refresh_token=False) as gotrue:
        yield gotrue


def _email() -> str:
    return f"flow-{uuid.uuid4().hex[:12]}@example.com"


def _confirmed(flows: FlowServer, client: SyncGoTrueClient) -> str:
    email = _email()
    client.sign_up({"email": email, "password": PASSWORD})
    client.verify_otp({"email": email, "token": flows.server.otp_for(email), "type": "signup"})
    return email


def test_sign_in_with_otp_then_verify(flows: FlowServer, client: SyncGoTrueClient) -> None:
    """sign_in_with_otp mails a code to a new address; verify_otp signs in with it."""
    email = _email()
    response = client.sign_in_with_otp({"email": email})
    assert response.message_id is None
    verified = client.verify_otp(
        {"email": email, "token": flows.server.otp_for(email), "type": "email"}
    )
    assert verified.session is not None
    assert verified.user is not None and verified.user.email == email
    client.sign_out()
    client.sign_in_with_otp({"email": email, "options": {"should_create_user": False}})
    assert flows.server.last_mail_to(email, count=2)["subject"] == "Your sign-in link"
    magic = client.verify_otp(
        {"email": email, "token": flows.server.otp_for(email, count=2), "type": "magiclink"}
    )
    assert magic.session is not None
    with pytest.raises(AuthApiError) as caught:
        client.sign_in_with_otp({"email": _email(), "options": {"should_create_user": False}})
    assert caught.value.code == "otp_disabled"


def test_reset_password_then_update_user(flows: FlowServer, client: SyncGoTrueClient) -> None:
    """reset_password_for_email, verify_otp(recovery), update_user(password), sign in."""
    email = _confirmed(flows, client)
    client.sign_out()
    client.reset_password_for_email(email)
    client.reset_password_for_email(_email())  # unknown addresses succeed the same way
    recovered = client.verify_otp(
        {"email": email, "token": flows.server.otp_for(email, count=2), "type": "recovery"}
    )
    assert recovered.session is not None
    client.update_user({"password": NEW_PASSWORD})
    client.sign_out()
    with pytest.raises(AuthApiError):
        client.sign_in_with_password({"email": email, "password": PASSWORD})
    assert client.sign_in_with_password({"email": email, "password": NEW_PASSWORD}).session


def test_resend_signup(flows: FlowServer, client: SyncGoTrueClient) -> None:
    """resend(signup) mails a fresh code that confirms the address."""
    email = _email()
    client.sign_up({"email": email, "password": PASSWORD})
    first = flows.server.otp_for(email)
    client.resend({"type": "signup", "email": email})
    second = flows.server.otp_for(email, count=2)
    with pytest.raises(AuthApiError) as caught:
        client.verify_otp({"email": email, "token": first, "type": "signup"})
    assert caught.value.code == "otp_expired"
    assert client.verify_otp({"email": email, "token": second, "type": "signup"}).session


def test_update_email_with_both_confirmations(flows: FlowServer, client: SyncGoTrueClient) -> None:
    """update_user(email): a code to each address; the change completes on the second."""
    old = _confirmed(flows, client)
    new = _email()
    updated = client.update_user({"email": new})
    assert updated.user.new_email == new
    assert updated.user.email == old
    first = client.verify_otp(
        {"email": new, "token": flows.server.otp_for(new), "type": "email_change"}
    )
    assert first.session is None  # GoTrue's "Confirmation link accepted" answer
    second = client.verify_otp(
        {"email": old, "token": flows.server.otp_for(old, count=2), "type": "email_change"}
    )
    assert second.session is not None
    assert second.user is not None and second.user.email == new


def test_reauthenticate_then_update_password_with_nonce(
    flows: FlowServer, client: SyncGoTrueClient
) -> None:
    """Past a day, update_user(password) needs reauthenticate()'s mailed nonce."""
    email = _confirmed(flows, client)
    session = client.get_session()
    assert session is not None
    session_id = jwt.decode(session.access_token, options={"verify_signature": False})["session_id"]
    engine = create_engine(f"sqlite:///{flows.database}")
    try:
        with engine.begin() as connection:
            connection.execute(
                update(sessions)
                .where(sessions.c.id == session_id)
                .values(created_at=now() - timedelta(hours=25))
            )
    finally:
        engine.dispose()
    with pytest.raises(AuthApiError) as caught:
        client.update_user({"password": NEW_PASSWORD})
    assert caught.value.code == "reauthentication_needed"
    client.reauthenticate()
    nonce = flows.server.otp_for(email, count=2)
    client.update_user({"password": NEW_PASSWORD, "nonce": nonce})
    client.sign_out()
    assert client.sign_in_with_password({"email": email, "password": NEW_PASSWORD}).session

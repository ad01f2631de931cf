"""The real ``supabase_auth`` client (from PyPI, unmodified) against ``apitask-auth serve``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from supabase_auth import SyncGoTrueAdminAPI, SyncGoTrueClient
from supabase_auth.errors import AuthApiError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .conftest import Server

PASSWORD = "correct-horse-9"


def _email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture
def client(server: Server) -> Iterator[SyncGoTrueClient]:
    with SyncGoTrueClient(url=server.url, auto_refresh_token=False) as gotrue:
        yield gotrue


@pytest.fixture
def admin(server: Server) -> Iterator[SyncGoTrueAdminAPI]:
    headers = {"Authorization": f"Bearer {server.service_key}"}
    with SyncGoTrueAdminAPI(url=server.url, headers=headers) as api:
        yield api


def test_sign_up_then_verify_the_mailed_code(server: Server, client: SyncGoTrueClient) -> None:
    """Autoconfirm off: sign_up returns a user, no session; the mailed code signs in."""
    email = _email()
    response = client.sign_up({"email": email, "password": PASSWORD})
    assert response.session is None
    assert response.user is not None
    assert response.user.email == email
    assert response.user.email_confirmed_at is None
    with pytest.raises(AuthApiError) as caught:
        client.sign_in_with_password({"email": email, "password": PASSWORD})
    assert caught.value.code == "email_not_confirmed"

    code = server.otp_for(email)
    verified = client.verify_otp({"email": email, "token": code, "type": "signup"})
    assert verified.session is not None
    assert verified.user is not None
    assert verified.user.email_confirmed_at is not None
    with pytest.raises(AuthApiError) as caught:
        client.verify_otp({"email": email, "token": code, "type": "signup"})
    assert caught.value.code == "otp_expired"


def test_password_session_lifecycle(server: Server, client: SyncGoTrueClient) -> None:
    """sign_in_with_password, get_user, refresh_session, sign_out, as a client does."""
    email = _email()
    client.sign_up({"email": email, "password": PASSWORD})
    client.verify_otp({"email": email, "token": server.otp_for(email), "type": "signup"})
    client.sign_out()

    signed_in = client.sign_in_with_password({"email": email, "password": PASSWORD})
    assert signed_in.session is not None
    first = signed_in.session
    user = client.get_user()
    assert user is not None
    assert user.user.email == email

    refreshed = client.refresh_session()
    assert refreshed.session is not None
    assert refreshed.session.refresh_token != first.refresh_token
    assert client.get_user() is not None

    client.sign_out()
    assert client.get_session() is None
    with pytest.raises(AuthApiError) as caught:
        client.get_user(refreshed.session.access_token)
    assert caught.value.code == "session_not_found"
    with pytest.raises(AuthApiError) as caught:
        client.sign_in_with_password({"email": email, "password": "wrong-password"})
    assert caught.value.code == "invalid_credentials"


def test_admin_users(admin: SyncGoTrueAdminAPI) -> None:
    """create_user, list_users, get_user_by_id, update_user_by_id, delete_user."""
    email = _email()
    created = admin.create_user(
        {"email": email, "password": PASSWORD, "email_confirm": True, "user_metadata": {"a": 1}}
    ).user
    assert created.email == email
    assert created.email_confirmed_at is not None
    # Confirming writes email_verified into the metadata, as GoTrue's Confirm does.
    assert created.user_metadata == {"a": 1, "email_verified": True}

    listed = admin.list_users()
    assert created.id in {user.id for user in listed}
    assert admin.get_user_by_id(created.id).user.email == email

    updated = admin.update_user_by_id(created.id, {"user_metadata": {"b": 2}}).user
    assert updated.user_metadata == {"a": 1, "email_verified": True, "b": 2}

    admin.delete_user(created.id)
    with pytest.raises(AuthApiError) as caught:
        admin.get_user_by_id(created.id)
    assert caught.value.code == "user_not_found"


def test_invite_then_accept(server: Server, admin: SyncGoTrueAdminAPI) -> None:
    """invite_user_by_email sets invited_at and mails a link that signs the user in."""
    email = _email()
    invited = admin.invite_user_by_email(email).user
    assert invited.invited_at is not None
    link = next(link for link in server.last_mail_to(email)["links"] if "/verify?" in link)
    response = httpx.get(link, follow_redirects=False)
    assert response.status_code == 303
    fragment = parse_qs(urlsplit(response.headers["location"]).fragment)
    assert fragment["type"] == ["invite"]
    assert fragment["access_token"]


def test_generate_link(server: Server, admin: SyncGoTrueAdminAPI, client: SyncGoTrueClient) -> None:
    """generate_link sends nothing; its OTP and hashed token verify."""
    email = _email()
    link = admin.generate_link({"type": "signup", "email": email, "password": PASSWORD})
    # A mail that is sent after this call and arrives tells that any mail
    # generate_link had handed over (pool, outbox: sent later) would be there too.
    witness = _email()
    admin.invite_user_by_email(witness)
    assert server.mail_to(witness)
    assert server.mail_to(email, wait=0) == []
    props = link.properties
    assert props.verification_type == "signup"
    assert props.hashed_token in props.action_link
    verified = client.verify_otp({"token_hash": props.hashed_token, "type": "signup"})
    assert verified.session is not None

    magic = admin.generate_link({"type": "magiclink", "email": email}).properties
    session = client.verify_otp({"email": email, "token": magic.email_otp, "type": "magiclink"})
    assert session.user is not None
    assert session.user.email == email


def test_autoconfirm_sign_up_returns_a_session(autoconfirm_server: Server) -> None:
    """Autoconfirm on: sign_up returns a session; a second sign_up is user_already_exists."""
    with SyncGoTrueClient(url=autoconfirm_server.url, auto_refresh_token=False) as client:
        email = _email()
        response = client.sign_up({"email": email, "password": PASSWORD})
        assert response.session is not None
        assert response.user is not None
        assert response.user.email_confirmed_at is not None
        with pytest.raises(AuthApiError) as caught:
            client.sign_up({"email": email, "password": PASSWORD})
        assert caught.value.code == "user_already_exists"
        assert caught.value.status == 422

"""The real ``supabase_auth`` client through an anonymous sign-in and its conversion to a
permanent user (issue #16), against ``apitask-auth serve`` in each delivery mode:
the e-mail change mails the new address like every mail."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from supabase_auth import SyncGoTrueClient

from .conftest import DELIVERY_MODES, Server, start_server

if TYPE_CHECKING:
    from collections.abc import Iterator

PASSWORD = "correct-horse-9"


@pytest.fixture(scope="module", params=DELIVERY_MODES)
def anonymous_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Anonymous sign-ins on, autoconfirm off."""
    yield from start_server(
        tmp_path_factory.mktemp(f"anonymous-{request.param}"),
        request.param,
        GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED="true",
    )


def _claims(access_token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return claims


def test_sign_in_anonymously_then_add_an_address_and_confirm_it(
    anonymous_server: Server,
) -> None:
    """sign_in_anonymously gives an anonymous session; update_user with an address and a
    password mails a code to the address; verify_otp with it makes the session's user
    permanent, and the password signs in."""
    email = f"anon-{uuid.uuid4().hex[:12]}@example.com"
    with SyncGoTrueClient(url=anonymous_server.url, auto_refresh_token=False) as gotrue:
        signed_in = gotrue.sign_in_anonymously({"options": {"data": {"plan": "trial"}}})
        assert signed_in.user is not None and signed_in.session is not None
        assert signed_in.user.is_anonymous is True
        assert (signed_in.user.email, signed_in.user.user_metadata) == ("", {"plan": "trial"})
        claims = _claims(signed_in.session.access_token)
        assert claims["is_anonymous"] is True
        assert [entry["method"] for entry in claims["amr"]] == ["anonymous"]

        updated = gotrue.update_user({"email": email, "password": PASSWORD})
        assert (updated.user.new_email, updated.user.is_anonymous) == (email, True)

        verified = gotrue.verify_otp(
            {"email": email, "token": anonymous_server.otp_for(email), "type": "email_change"}
        )
        assert verified.user is not None and verified.session is not None
        assert verified.user.id == signed_in.user.id
        assert (verified.user.email, verified.user.is_anonymous) == (email, False)
        assert _claims(verified.session.access_token)["is_anonymous"] is False
        session = gotrue.get_session()
        assert session is not None and session.user.is_anonymous is False
        current = gotrue.get_user()
        assert current is not None and current.user.is_anonymous is False

    with SyncGoTrueClient(url=anonymous_server.url, auto_refresh_token=False) as gotrue:
        again = gotrue.sign_in_with_password({"email": email, "password": PASSWORD})
        assert again.user is not None and again.user.id == signed_in.user.id

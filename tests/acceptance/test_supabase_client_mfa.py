"""The real ``supabase_auth`` client through MFA with a TOTP factor (issue #16), against
``apitask-auth serve``: enrol, challenge, verify, challenge_and_verify, the assurance
levels it reads from the tokens, list, unenrol, and the admin factor calls.

TOTP sends no mail, so one delivery mode is enough. Phone factors need the SMS
chain (another part of issue #16); tests/service/test_mfa_phone.py drives them
through a recording texter.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import jwt
import pyotp
import pytest
from supabase_auth import SyncGoTrueAdminAPI, SyncGoTrueClient
from supabase_auth.errors import AuthApiError

from .conftest import Server, start_server

if TYPE_CHECKING:
    from collections.abc import Iterator

PASSWORD = "correct-horse-9"


@pytest.fixture(scope="module")
def mfa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Autoconfirm on (a sign-up signs in); MFA settings at GoTrue's defaults."""
    yield from start_server(tmp_path_factory.mktemp("mfa"), GOTRUE_MAILER_AUTOCONFIRM="true")


def _claims(access_token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return claims


def _email() -> str:
    return f"mfa-{uuid.uuid4().hex[:12]}@example.com"


def test_totp_enrol_verify_and_assurance_levels(mfa_server: Server) -> None:
    """aal1 after the password; enrol gives the QR code as a data URI (the client adds
    the prefix to GoTrue's SVG) and the secret; verify makes the session aal2 with
    ``totp`` in its amr, and refreshing keeps it; a new password sign-in is aal1
    with aal2 as the next level."""
    email = _email()
    with SyncGoTrueClient(url=mfa_server.url, auto_refresh_token=False) as gotrue:
        gotrue.sign_up({"email": email, "password": PASSWORD})
        level = gotrue.mfa.get_authenticator_assurance_level()
        assert (level.current_level, level.next_level) == ("aal1", "aal1")

        enrolled = gotrue.mfa.enroll(
            {"factor_type": "totp", "friendly_name": "phone app", "issuer": "Example"}
        )
        assert enrolled.type == "totp" and enrolled.friendly_name == "phone app"
        assert enrolled.totp is not None
        assert enrolled.totp.qr_code.startswith("data:image/svg+xml;utf-8,<svg")
        assert enrolled.totp.uri.startswith("otpauth://totp/Example:")
        totp = pyotp.TOTP(enrolled.totp.secret)
        listed = gotrue.mfa.list_factors()
        assert ([f.id for f in listed.all], listed.totp) == ([enrolled.id], [])

        challenge = gotrue.mfa.challenge({"factor_id": enrolled.id})
        with pytest.raises(AuthApiError) as wrong:
            gotrue.mfa.verify(
                {
                    "factor_id": enrolled.id,
                    "challenge_id": challenge.id,
                    "code": "000000" if totp.now() != "000000" else "111111",
                }
            )
        assert (wrong.value.status, wrong.value.code) == (422, "mfa_verification_failed")
        verified = gotrue.mfa.verify(
            {"factor_id": enrolled.id, "challenge_id": challenge.id, "code": totp.now()}
        )
        claims = _claims(verified.access_token)
        assert claims["aal"] == "aal2"
        level = gotrue.mfa.get_authenticator_assurance_level()
        assert (level.current_level, level.next_level) == ("aal2", "aal2")
        assert [entry.method for entry in level.current_authentication_methods] == [
            "totp",
            "password",
        ]
        assert [f.id for f in gotrue.mfa.list_factors().totp] == [enrolled.id]

        refreshed = gotrue.refresh_session()
        assert refreshed.session is not None
        assert _claims(refreshed.session.access_token)["aal"] == "aal2"

        again = gotrue.mfa.challenge_and_verify({"factor_id": enrolled.id, "code": totp.now()})
        assert _claims(again.access_token)["aal"] == "aal2"

    with SyncGoTrueClient(url=mfa_server.url, auto_refresh_token=False) as gotrue:
        gotrue.sign_in_with_password({"email": email, "password": PASSWORD})
        level = gotrue.mfa.get_authenticator_assurance_level()
        assert (level.current_level, level.next_level) == ("aal1", "aal2")
        with pytest.raises(AuthApiError) as refused:
            gotrue.mfa.unenroll({"factor_id": enrolled.id})
        assert (refused.value.status, refused.value.code) == (422, "insufficient_aal")
        gotrue.mfa.challenge_and_verify({"factor_id": enrolled.id, "code": totp.now()})
        assert gotrue.mfa.unenroll({"factor_id": enrolled.id}).id == enrolled.id
        assert gotrue.mfa.list_factors().all == []


def test_admin_lists_and_deletes_factors(mfa_server: Server) -> None:
    """admin.mfa.list_factors and delete_factor, on a factor the user enrolled."""
    with SyncGoTrueClient(url=mfa_server.url, auto_refresh_token=False) as gotrue:
        signed_up = gotrue.sign_up({"email": _email(), "password": PASSWORD})
        assert signed_up.user is not None
        enrolled = gotrue.mfa.enroll({"factor_type": "totp", "friendly_name": "app"})
    headers = {"Authorization": f"Bearer {mfa_server.service_key}"}
    with SyncGoTrueAdminAPI(url=mfa_server.url, headers=headers) as admin:
        factors = admin.mfa.list_factors({"user_id": signed_up.user.id})
        assert [(f.id, f.status, f.friendly_name) for f in factors] == [
            (enrolled.id, "unverified", "app")
        ]
        deleted = admin.mfa.delete_factor({"user_id": signed_up.user.id, "id": enrolled.id})
        assert deleted.id == enrolled.id
        assert admin.mfa.list_factors({"user_id": signed_up.user.id}) == []


def test_anonymous_users_cannot_enrol(tmp_path_factory: pytest.TempPathFactory) -> None:
    """GoTrue's requireNotAnonymous on /factors."""
    for server in start_server(
        tmp_path_factory.mktemp("mfa-anonymous"),
        GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED="true",
    ):
        with SyncGoTrueClient(url=server.url, auto_refresh_token=False) as gotrue:
            gotrue.sign_in_anonymously()
            with pytest.raises(AuthApiError) as refused:
                gotrue.mfa.enroll({"factor_type": "totp"})
        assert (refused.value.status, refused.value.code) == (403, "no_authorization")

"""The real ``supabase_auth`` client on the features this service leaves off (issue #14):
each call raises GoTrue's own error for the feature switched off, as against a
GoTrue deployment configured so, never a bare 404."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from supabase_auth import SyncGoTrueAdminAPI, SyncGoTrueClient
from supabase_auth.errors import AuthApiError

from .conftest import start_server

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .conftest import Server


@pytest.fixture(scope="module")
def features_off_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A dev server with autoconfirm on and phone sign-in off: dev mode turns it
    on, GoTrue's default (and every deployment that does not ask for it) is off."""
    yield from start_server(
        tmp_path_factory.mktemp("auth-features-off"),
        GOTRUE_MAILER_AUTOCONFIRM="true",
        GOTRUE_EXTERNAL_PHONE_ENABLED="false",
    )


@pytest.fixture
def signed_in(features_off_server: Server) -> Iterator[SyncGoTrueClient]:
    """A client with a session (autoconfirm on: sign-up signs in)."""
    with SyncGoTrueClient(url=features_off_server.url, auto_refresh_token=False) as gotrue:
        gotrue.sign_up(
            {"email": f"off-{uuid.uuid4().hex[:10]}@example.com", "password": "correct-horse-9"}
        )
        yield gotrue


def _raised(call: object) -> AuthApiError:
    assert callable(call)
    with pytest.raises(AuthApiError) as caught:
        call()
    return caught.value


def test_anonymous_and_phone_sign_ins_raise_gotrue_s_disabled_errors(
    features_off_server: Server,
) -> None:
    with SyncGoTrueClient(url=features_off_server.url, auto_refresh_token=False) as gotrue:
        error = _raised(gotrue.sign_in_anonymously)
        assert (error.status, error.code) == (422, "anonymous_provider_disabled")
        assert error.message == "Anonymous sign-ins are disabled"

        error = _raised(lambda: gotrue.sign_in_with_otp({"phone": "+15555550100"}))
        assert (error.status, error.code) == (400, "phone_provider_disabled")

        error = _raised(
            lambda: gotrue.sign_in_with_password({"phone": "+15555550100", "password": "x"})
        )
        assert (error.status, error.code, error.message) == (
            400,
            "phone_provider_disabled",
            "Phone logins are disabled",
        )

        error = _raised(
            lambda: gotrue.sign_in_with_id_token({"provider": "google", "token": "a.b.c"})
        )
        assert (error.status, error.code) == (400, "provider_disabled")

        error = _raised(lambda: gotrue.sign_in_with_sso({"domain": "example.com"}))
        assert (error.status, error.code, error.message) == (
            404,
            "saml_provider_disabled",
            "SAML 2.0 is disabled",
        )


def test_mfa_and_identity_linking_answer_as_gotrue_with_them_off(
    signed_in: SyncGoTrueClient,
) -> None:
    factors = signed_in.mfa.list_factors()
    assert (factors.all, factors.totp) == ([], [])

    # Phone MFA is off by default, as in GoTrue (TOTP is on: test_supabase_client_mfa.py).
    error = _raised(lambda: signed_in.mfa.enroll({"factor_type": "phone", "phone": "+14155552671"}))
    assert (error.status, error.code, error.message) == (
        422,
        "mfa_phone_enroll_not_enabled",
        "MFA enroll is disabled for Phone",
    )
    error = _raised(lambda: signed_in.mfa.challenge({"factor_id": str(uuid.uuid4())}))
    assert (error.status, error.code) == (404, "mfa_factor_not_found")

    error = _raised(lambda: signed_in.link_identity({"provider": "github"}))
    assert (error.status, error.code, error.message) == (
        404,
        "manual_linking_disabled",
        "Manual linking is disabled",
    )


def test_admin_factors_are_an_empty_list(features_off_server: Server) -> None:
    headers = {"Authorization": f"Bearer {features_off_server.service_key}"}
    with SyncGoTrueAdminAPI(url=features_off_server.url, headers=headers) as admin:
        user = admin.create_user(
            {"email": f"adm-{uuid.uuid4().hex[:10]}@example.com", "email_confirm": True}
        ).user
        assert admin.mfa.list_factors({"user_id": user.id}) == []
        error = _raised(
            lambda: admin.mfa.delete_factor({"user_id": user.id, "id": str(uuid.uuid4())})
        )
        assert (error.status, error.code) == (404, "mfa_factor_not_found")

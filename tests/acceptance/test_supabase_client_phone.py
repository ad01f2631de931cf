"""The real ``supabase_auth`` client through the phone flows (issues 16 and 17) against
``apitask-auth serve`` with the real SMS chain, in every delivery mode.

The service texts through its Twilio provider (httpx, the durable ``sms.*``
task in the mode under test) to a local server that speaks Twilio's Messages
API (tests/service/_twilio.py, on its own loop in a thread); the codes are
read from the texts that server delivered, waiting for them, so the modes
that send after the response (pool, outbox) need no sleeps. Flows:
sign_up with a phone then verify_otp sms, sign_in_with_password with the
phone, sign_in_with_otp, resend sms, update_user phone then resend and
verify_otp phone_change, reauthenticate (the nonce texted to a user with no
address) before a password change, an admin-created phone user, and a phone
MFA factor enrolled, challenged and verified with the texted code.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from supabase_auth import SyncGoTrueAdminAPI, SyncGoTrueClient
from supabase_auth.errors import AuthApiError

from service._twilio import SENDER, TwilioServer, twilio_in_thread

from .conftest import DELIVERY_MODES, Server, start_server

if TYPE_CHECKING:
    from collections.abc import Iterator

PASSWORD = "phone-secret-9"
CODE = re.compile(r"^Your code is (\d{6})$")


class PhoneServer:
    """A running service that texts through :attr:`twilio`."""

    def __init__(self, server: Server, twilio: TwilioServer) -> None:
        self.server = server
        self.twilio = twilio
        self.url = server.url

    def texts_to(self, number: str, count: int) -> list[str]:
        """The texts delivered to ``number`` (stored form), oldest first, once there
        are ``count``."""
        return self.twilio.texts_to_threadsafe(f"+{number}", count)

    def code_for(self, number: str, count: int) -> str:
        """The code in the ``count``-th text to ``number`` (the newest one)."""
        texts = self.texts_to(number, count)
        assert len(texts) == count, f"{len(texts)} texts to {number}, not {count}: {texts}"
        found = CODE.match(texts[-1])
        assert found is not None, texts[-1]
        return found.group(1)


@pytest.fixture(scope="module", params=DELIVERY_MODES)
def phone_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PhoneServer]:
    """Phone sign-in and phone MFA on, autoconfirm off, Twilio at the local server."""
    mode: str = request.param
    with twilio_in_thread() as twilio:
        environment = {
            "GOTRUE_EXTERNAL_PHONE_ENABLED": "true",
            "GOTRUE_SMS_PROVIDER": "twilio",
            "GOTRUE_SMS_TWILIO_ACCOUNT_SID": twilio.account_sid,
            "GOTRUE_SMS_TWILIO_AUTH_TOKEN": twilio.auth_token,
            "GOTRUE_SMS_TWILIO_MESSAGE_SERVICE_SID": SENDER,
            "GOTRUE_SMS_TWILIO_API_BASE_URL": twilio.url,
            # Each test texts one number more than once; the interval is not under test.
            "GOTRUE_SMS_MAX_FREQUENCY": "1us",
            "GOTRUE_MFA_PHONE_ENROLL_ENABLED": "true",
            "GOTRUE_MFA_PHONE_VERIFY_ENABLED": "true",
        }
        tmp = tmp_path_factory.mktemp(f"phone-{mode}")
        for server in start_server(tmp, mode, **environment):
            yield PhoneServer(server, twilio)
        # Nothing was refused or dropped on the way: every attempt was delivered.
        assert {attempt.answer for attempt in twilio.attempts} <= {"201"}


def _number() -> str:
    return f"+1555{random.randrange(10**7):07d}"


def _claims(access_token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return claims


def test_settings_name_the_sms_provider(phone_server: PhoneServer) -> None:
    """/settings says phone sign-in is on and which provider texts, as GoTrue does
    (GOTRUE_SMS_PROVIDER's value)."""
    settings = httpx.get(f"{phone_server.url}/settings").json()
    assert settings["external"]["phone"] is True
    assert (settings["sms_provider"], settings["phone_autoconfirm"]) == ("twilio", False)


def test_sign_up_verify_then_sign_in_with_password_and_with_otp(
    phone_server: PhoneServer,
) -> None:
    number = _number()
    stored = number.removeprefix("+")
    with SyncGoTrueClient(url=phone_server.url, auto_refresh_token=False) as gotrue:
        signed_up = gotrue.sign_up({"phone": number, "password": PASSWORD})
        assert signed_up.user is not None and signed_up.session is None
        assert signed_up.user.phone == stored and signed_up.user.phone_confirmed_at is None
        assert [identity.provider for identity in signed_up.user.identities or []] == ["phone"]

        verified = gotrue.verify_otp(
            {"phone": number, "token": phone_server.code_for(stored, 1), "type": "sms"}
        )
        assert verified.session is not None and verified.user is not None
        assert verified.user.phone_confirmed_at is not None
        gotrue.sign_out()

        by_password = gotrue.sign_in_with_password({"phone": number, "password": PASSWORD})
        assert by_password.user is not None and by_password.user.id == verified.user.id
        gotrue.sign_out()

        sent = gotrue.sign_in_with_otp({"phone": number})
        assert (sent.user, sent.session) == (None, None)
        by_code = gotrue.verify_otp(
            {"phone": number, "token": phone_server.code_for(stored, 2), "type": "sms"}
        )
        assert by_code.user is not None and by_code.user.id == verified.user.id
        assert by_code.session is not None
        assert _claims(by_code.session.access_token)["amr"][0]["method"] == "otp"

        with pytest.raises(AuthApiError) as refused:
            gotrue.verify_otp({"phone": number, "token": "000000", "type": "sms"})
        assert refused.value.code == "otp_expired"


def test_resend_then_change_the_number(phone_server: PhoneServer) -> None:
    number, new = _number(), _number()
    stored, new_stored = number.removeprefix("+"), new.removeprefix("+")
    with SyncGoTrueClient(url=phone_server.url, auto_refresh_token=False) as gotrue:
        gotrue.sign_up({"phone": number, "password": PASSWORD})
        gotrue.resend({"type": "sms", "phone": number})
        first, resent = phone_server.texts_to(stored, 2)
        assert first != resent  # a new code, texted again
        code = phone_server.code_for(stored, 2)
        gotrue.verify_otp({"phone": number, "token": code, "type": "sms"})

        updated = gotrue.update_user({"phone": new})
        assert updated.user.phone == stored and updated.user.new_phone == new_stored
        gotrue.resend({"type": "phone_change", "phone": number})
        code = phone_server.code_for(new_stored, 2)
        changed = gotrue.verify_otp({"phone": new, "token": code, "type": "phone_change"})
        assert changed.user is not None and changed.user.phone == new_stored
        current = gotrue.get_user()
        assert current is not None and current.user.phone == new_stored
    # The change went to the new number only: the old one got its two sign-up texts.
    assert len(phone_server.twilio.texts_to(f"+{stored}")) == 2


def test_reauthenticate_by_text_then_change_the_password(phone_server: PhoneServer) -> None:
    """A user with a number and no address gets the reauthentication nonce by text;
    with it the password changes, and the new one signs in."""
    number = _number()
    stored = number.removeprefix("+")
    with SyncGoTrueClient(url=phone_server.url, auto_refresh_token=False) as gotrue:
        gotrue.sign_up({"phone": number, "password": PASSWORD})
        code = phone_server.code_for(stored, 1)
        gotrue.verify_otp({"phone": number, "token": code, "type": "sms"})
        gotrue.reauthenticate()
        nonce = phone_server.code_for(stored, 2)
        gotrue.update_user({"password": "phone-secret-10", "nonce": nonce})
        gotrue.sign_out()
        again = gotrue.sign_in_with_password({"phone": number, "password": "phone-secret-10"})
        assert again.user is not None and again.user.phone == stored


def test_admin_created_phone_user_signs_in(phone_server: PhoneServer) -> None:
    """The admin API creates a confirmed phone user (no text sent); the phone and
    password sign in, and an OTP sign-in texts that number."""
    number = _number()
    stored = number.removeprefix("+")
    headers = {"Authorization": f"Bearer {phone_server.server.service_key}"}
    with SyncGoTrueAdminAPI(url=phone_server.url, headers=headers) as admin:
        created = admin.create_user({"phone": number, "password": PASSWORD, "phone_confirm": True})
    assert created.user.phone == stored and created.user.phone_confirmed_at is not None
    with SyncGoTrueClient(url=phone_server.url, auto_refresh_token=False) as gotrue:
        signed_in = gotrue.sign_in_with_password({"phone": number, "password": PASSWORD})
        assert signed_in.user is not None and signed_in.user.id == created.user.id
        gotrue.sign_out()
        gotrue.sign_in_with_otp({"phone": number, "options": {"should_create_user": False}})
        code = phone_server.code_for(stored, 1)
        by_code = gotrue.verify_otp({"phone": number, "token": code, "type": "sms"})
        assert by_code.user is not None and by_code.user.id == created.user.id


def test_phone_factor_enrolled_challenged_and_verified_with_the_texted_code(
    phone_server: PhoneServer,
) -> None:
    """A phone factor's challenge is texted through the same chain (GoTrue's MFA
    template, the default one here); verifying it raises the session to aal2."""
    number, factor_number = _number(), _number()
    stored, factor_stored = number.removeprefix("+"), factor_number.removeprefix("+")
    with SyncGoTrueClient(url=phone_server.url, auto_refresh_token=False) as gotrue:
        gotrue.sign_up({"phone": number, "password": PASSWORD})
        code = phone_server.code_for(stored, 1)
        gotrue.verify_otp({"phone": number, "token": code, "type": "sms"})
        level = gotrue.mfa.get_authenticator_assurance_level()
        assert (level.current_level, level.next_level) == ("aal1", "aal1")

        enrolled = gotrue.mfa.enroll({"factor_type": "phone", "phone": factor_number})
        # The answer echoes the number as given, as GoTrue's does.
        assert enrolled.type == "phone" and enrolled.phone == factor_number
        challenge = gotrue.mfa.challenge({"factor_id": enrolled.id, "channel": "sms"})
        code = phone_server.code_for(factor_stored, 1)
        with pytest.raises(AuthApiError) as wrong:
            gotrue.mfa.verify(
                {
                    "factor_id": enrolled.id,
                    "challenge_id": challenge.id,
                    "code": "000000" if code != "000000" else "111111",
                }
            )
        assert (wrong.value.status, wrong.value.code) == (422, "mfa_verification_failed")
        verified = gotrue.mfa.verify(
            {"factor_id": enrolled.id, "challenge_id": challenge.id, "code": code}
        )
        claims = _claims(verified.access_token)
        assert claims["aal"] == "aal2"
        assert claims["amr"][0]["method"] == "mfa/phone"
        level = gotrue.mfa.get_authenticator_assurance_level()
        assert (level.current_level, level.next_level) == ("aal2", "aal2")
        factors = gotrue.mfa.list_factors()
        assert [(factor.id, factor.status) for factor in factors.phone] == [
            (enrolled.id, "verified")
        ]

"""The real ``supabase_auth`` client through the phone flows (issue 17) against the
service under a real uvicorn: sign_up with a phone then verify_otp sms,
sign_in_with_otp, sign_in_with_password, update_user with a phone then
verify_otp phone_change, and resend."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from supabase_auth import SyncGoTrueClient
from supabase_auth.errors import AuthApiError

from ._service import dev_environment
from ._uvicorn import free_port
from ._uvicorn import server as run_server

if TYPE_CHECKING:
    from collections.abc import Iterator

PASSWORD = "phone-secret-9"
REPO = Path(__file__).resolve().parents[2]


class PhoneServer:
    """The running service and the texts it sent."""

    def __init__(self, url: str) -> None:
        self.url = url

    def texts_to(self, number: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/_test/texts", params={"to": number})
        response.raise_for_status()
        texts: list[dict[str, Any]] = response.json()
        return texts

    def code_for(self, number: str) -> str:
        texts = self.texts_to(number)
        assert texts, f"no text to {number}"
        return str(texts[-1]["otp"])


@pytest.fixture(scope="module")
def phone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhoneServer]:
    """Phone sign-in on, autoconfirm off, a texter that keeps its texts."""
    tmp = tmp_path_factory.mktemp("phone")
    port = free_port()
    environment = dev_environment(port) | {
        "DATABASE_URL": f"sqlite:///{tmp / 'auth.db'}",
        "GOTRUE_EXTERNAL_PHONE_ENABLED": "true",
        # Each test texts one number more than once; the interval is not under test.
        "GOTRUE_SMS_MAX_FREQUENCY": "1us",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.acceptance._phone_app:create_app",
        "--factory",
        "--app-dir",
        str(REPO),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with run_server(command, env=environment, cwd=tmp) as url:
        yield PhoneServer(url)


def _number() -> str:
    return f"+1555{random.randrange(10**7):07d}"


def test_sign_up_verify_then_sign_in_with_password_and_with_otp(
    phone_server: PhoneServer,
) -> None:
    number = _number()
    stored = number.removeprefix("+")
    with SyncGoTrueClient(url=phone_server.url, auto_refresh_token=False) as gotrue:
        signed_up = gotrue.sign_up({"phone": number, "password": PASSWORD})
        assert signed_up.user is not None and signed_up.session is None
        assert signed_up.user.phone == stored
        assert [identity.provider for identity in signed_up.user.identities or []] == ["phone"]

        verified = gotrue.verify_otp(
            {"phone": number, "token": phone_server.code_for(stored), "type": "sms"}
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
            {"phone": number, "token": phone_server.code_for(stored), "type": "sms"}
        )
        assert by_code.user is not None
        assert by_code.user.id == verified.user.id

        with pytest.raises(AuthApiError) as refused:
            gotrue.verify_otp({"phone": number, "token": "000000", "type": "sms"})
        assert refused.value.code == "otp_expired"


def test_resend_then_change_the_number(phone_server: PhoneServer) -> None:
    number, new = _number(), _number()
    stored, new_stored = number.removeprefix("+"), new.removeprefix("+")
    with SyncGoTrueClient(url=phone_server.url, auto_refresh_token=False) as gotrue:
        gotrue.sign_up({"phone": number, "password": PASSWORD})
        gotrue.resend({"type": "sms", "phone": number})
        assert len(phone_server.texts_to(stored)) == 2
        gotrue.verify_otp({"phone": number, "token": phone_server.code_for(stored), "type": "sms"})

        updated = gotrue.update_user({"phone": new})
        assert updated.user.phone == stored and updated.user.new_phone == new_stored
        gotrue.resend({"type": "phone_change", "phone": number})
        assert len(phone_server.texts_to(new_stored)) == 2
        changed = gotrue.verify_otp(
            {"phone": new, "token": phone_server.code_for(new_stored), "type": "phone_change"}
        )
        assert changed.user is not None and changed.user.phone == new_stored
        current = gotrue.get_user()
        assert current is not None and current.user.phone == new_stored

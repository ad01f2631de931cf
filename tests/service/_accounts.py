"""Shared steps for the flow tests: a confirmed account, a signed-in session, PKCE values."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import jwt
from sqlalchemy import update

from apitask_auth.storage.tables import now, sessions

from .conftest import SECRET, email

if TYPE_CHECKING:
    from .conftest import Service

PASSWORD = "secret-password"
VERIFIER = "v" * 50
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)


async def signed_in(svc: Service, address: str | None = None) -> tuple[str, dict[str, Any]]:
    """Sign up, confirm with the mailed code, sign in with the password: (address, session)."""
    address = address or email()
    signup = await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    assert signup.status_code == 200, signup.text
    verified = await svc.http.post(
        "/verify", json={"type": "signup", "email": address, "token": svc.otp(address)}
    )
    assert verified.status_code == 200, verified.text
    session = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert session.status_code == 200, session.text
    return address, session.json()


async def admin_created(svc: Service, address: str) -> dict[str, Any]:
    """A confirmed account with PASSWORD, created through the admin API: its user body."""
    created = await svc.http.post(
        "/admin/users",
        json={"email": address, "password": PASSWORD, "email_confirm": True},
        headers=svc.admin_headers(),
    )
    assert created.status_code == 200, created.text
    body: dict[str, Any] = created.json()
    return body


async def age_session(svc: Service, session: dict[str, Any], hours: int) -> None:
    """Make the session behind ``session`` ``hours`` old (reauthentication rules)."""
    claims = jwt.decode(
        session["access_token"], SECRET, algorithms=["HS256"], options={"verify_aud": False}
    )
    async with svc.app.state.service.engine.begin() as conn:
        await conn.execute(
            update(sessions)
            .where(sessions.c.id == claims["session_id"])
            .values(created_at=now() - timedelta(hours=hours))
        )


def bearer(session: dict[str, Any]) -> dict[str, str]:
    """The Authorization header of a session."""
    return {"Authorization": f"Bearer {session['access_token']}"}


def mails_to(svc: Service, address: str) -> list[Any]:
    """Every recorded mail to ``address``, oldest first."""
    return [mail for mail in svc.sent if mail.to == address]


def query(url: str) -> dict[str, list[str]]:
    """The query parameters of a URL."""
    return parse_qs(urlsplit(url).query)


def fragment(url: str) -> dict[str, list[str]]:
    """The fragment parameters of a URL (GoTrue puts sessions and errors there)."""
    return parse_qs(urlsplit(url).fragment, keep_blank_values=True)

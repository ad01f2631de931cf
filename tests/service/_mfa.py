"""Shared steps for the MFA tests: enrol, challenge, verify, read a token's claims."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import jwt
import pyotp
from sqlalchemy import update

from apitask_auth.storage.tables import mfa_challenges, now

from ._accounts import bearer
from .conftest import SECRET

if TYPE_CHECKING:
    from .conftest import Service


def claims(session: dict[str, Any]) -> dict[str, Any]:
    """The access token's claims."""
    found: dict[str, Any] = jwt.decode(
        session["access_token"], SECRET, algorithms=["HS256"], options={"verify_aud": False}
    )
    return found


def methods(session: dict[str, Any]) -> list[str]:
    """The token's amr methods, newest first."""
    return [entry["method"] for entry in claims(session)["amr"]]


async def enroll(svc: Service, session: dict[str, Any], **body: Any) -> dict[str, Any]:
    """POST /factors, which must succeed: the factor's JSON."""
    response = await svc.http.post(
        "/factors", json={"factor_type": "totp", **body}, headers=bearer(session)
    )
    assert response.status_code == 200, response.text
    factor: dict[str, Any] = response.json()
    return factor


async def challenge(svc: Service, session: dict[str, Any], factor_id: str) -> str:
    """POST /factors/{id}/challenge, which must succeed: the challenge id."""
    response = await svc.http.post(
        f"/factors/{factor_id}/challenge", json={}, headers=bearer(session)
    )
    assert response.status_code == 200, response.text
    challenge_id: str = response.json()["id"]
    return challenge_id


async def verify(
    svc: Service, session: dict[str, Any], factor_id: str, challenge_id: str, code: str
) -> Any:
    """POST /factors/{id}/verify: the response, whatever it is."""
    return await svc.http.post(
        f"/factors/{factor_id}/verify",
        json={"challenge_id": challenge_id, "code": code},
        headers=bearer(session),
    )


def totp_code(factor: dict[str, Any], steps: int = 0) -> str:
    """The factor's code now (or ``steps`` periods away), as an authenticator app shows it."""
    secret = factor["totp"]["secret"]
    return pyotp.TOTP(secret).at(now() + timedelta(seconds=30 * steps))


async def verified_totp(
    svc: Service, session: dict[str, Any], **body: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Enrol a TOTP factor and verify it: (the factor, the aal2 session)."""
    factor = await enroll(svc, session, **body)
    challenge_id = await challenge(svc, session, factor["id"])
    response = await verify(svc, session, factor["id"], challenge_id, totp_code(factor))
    assert response.status_code == 200, response.text
    raised: dict[str, Any] = response.json()
    return factor, raised


async def age_challenge(svc: Service, challenge_id: str, seconds: float) -> None:
    """Make the challenge ``seconds`` older."""
    async with svc.app.state.service.engine.begin() as conn:
        await conn.execute(
            update(mfa_challenges)
            .where(mfa_challenges.c.id == challenge_id)
            .values(created_at=now() - timedelta(seconds=seconds))
        )


def error(response: Any) -> tuple[int, str, str]:
    """(status, error_code, msg) of an error response."""
    body = response.json()
    return response.status_code, body.get("error_code"), body.get("msg")

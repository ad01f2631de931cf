"""GET /user compares the token's audience with the request's, as GoTrue's UserGet does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jwt

from ._accounts import signed_in
from .conftest import SECRET

if TYPE_CHECKING:
    from .conftest import Service


def _resigned(session: dict[str, Any], **claims: Any) -> dict[str, str]:
    """The session's access token with some claims replaced, signed with the service's key."""
    decoded = jwt.decode(session["access_token"], options={"verify_signature": False})
    token = jwt.encode(decoded | claims, SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


async def test_a_list_audience_is_read_by_its_first_entry(svc: Service) -> None:
    """aud ["authenticated", "other"]: the first entry is the audience (JWT allows a list)."""
    address, session = await signed_in(svc)
    response = await svc.http.get(
        "/user", headers=_resigned(session, aud=["authenticated", "other"])
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == address


async def test_another_audience_is_refused(svc: Service) -> None:
    """An X-JWT-AUD header other than the token's audience, whether the token's is a
    string or a list: GoTrue's 400."""
    _, session = await signed_in(svc)
    for headers in (
        _resigned(session, aud="authenticated"),
        _resigned(session, aud=["authenticated"]),
    ):
        headers |= {"X-JWT-AUD": "another-audience"}
        response = await svc.http.get("/user", headers=headers)
        assert (response.status_code, response.json()["error_code"]) == (400, "validation_failed")
        assert response.json()["msg"] == "Token audience doesn't match request audience"

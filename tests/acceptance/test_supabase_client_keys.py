"""Asymmetric signing keys, as the real ``supabase_auth`` client meets them.

``get_claims()`` verifies an asymmetrically signed token itself, with the key
it fetches from ``/.well-known/jwks.json``; for an HS256 token it asks
``GET /user`` instead. Both against ``apitask-auth serve`` started with a key
set made by ``apitask-auth keys generate``.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import httpx
import jwt
import pytest
from supabase_auth import SyncGoTrueClient
from supabase_auth.errors import AuthInvalidJwtError

from ._service import JWT_SECRET, generated_keys
from .conftest import Server, start_server

if TYPE_CHECKING:
    from collections.abc import Iterator

PASSWORD = "correct-horse-9"


@pytest.fixture(scope="module", params=["ES256", "RS256"])
def keyed_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, list[dict[str, str]]]]:
    keys = generated_keys(request.param)
    tmp = tmp_path_factory.mktemp(f"keys-{request.param}")
    for server in start_server(tmp, GOTRUE_MAILER_AUTOCONFIRM="true", GOTRUE_JWT_KEYS=keys):
        yield server, json.loads(keys)


def test_get_claims_verifies_through_the_jwks(
    keyed_server: tuple[Server, list[dict[str, str]]],
) -> None:
    server, [key] = keyed_server
    with SyncGoTrueClient(url=server.url, auto_refresh_token=False) as client:
        email = f"keys-{uuid.uuid4().hex[:12]}@example.com"
        session = client.sign_up({"email": email, "password": PASSWORD}).session
        assert session is not None
        header = jwt.get_unverified_header(session.access_token)
        assert (header["alg"], header["kid"]) == (key["alg"], key["kid"])
        claims = client.get_claims()
        assert claims is not None
        assert claims["claims"]["sub"] == session.user.id
        # The token signed by this key set is also accepted by the server itself.
        user = client.get_user(session.access_token)
        assert user is not None
        assert user.user.email == email
        # A token whose payload was changed fails the client's own check.
        head, _, signature = session.access_token.split(".")
        forged_claims = jwt.utils.base64url_encode(
            json.dumps(claims["claims"] | {"role": "service_role"}).encode()
        ).decode()
        with pytest.raises(AuthInvalidJwtError):
            client.get_claims(f"{head}.{forged_claims}.{signature}")


def test_the_jwks_publishes_public_keys_only(
    keyed_server: tuple[Server, list[dict[str, str]]],
) -> None:
    server, [key] = keyed_server
    response = httpx.get(f"{server.url}/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=600"
    [published] = response.json()["keys"]
    assert published["kid"] == key["kid"]
    assert "d" not in published
    assert "p" not in published
    assert published["key_ops"] == ["verify"]


def test_the_secret_still_verifies_the_project_api_keys(
    keyed_server: tuple[Server, list[dict[str, str]]],
) -> None:
    """The service_role key of a Supabase project is HS256 with the JWT secret."""
    server, _ = keyed_server
    service_key = jwt.encode({"role": "service_role"}, JWT_SECRET, algorithm="HS256")
    response = httpx.get(
        f"{server.url}/admin/users", headers={"Authorization": f"Bearer {service_key}"}
    )
    assert response.status_code == 200

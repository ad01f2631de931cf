"""GOTRUE_JWT_KEYS: which key signs, which keys verify, what the JWKS shows."""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from apitask_auth.accounts.jwt_keys import JWTKeys, JWTKeysError, generate_jwk

from ._accounts import bearer, signed_in
from .conftest import SECRET as SERVICE_SECRET

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service

SECRET = "a-secret-of-at-least-thirty-two-characters"


def keyset(*keys: dict[str, Any]) -> str:
    return json.dumps(list(keys))


def verifying_only(key: dict[str, Any]) -> dict[str, Any]:
    return key | {"key_ops": ["verify"]}


@pytest.mark.parametrize("alg", ["RS256", "RS512", "ES256", "ES512", "EdDSA"])
def test_the_signing_key_signs_with_its_alg_and_kid_and_verifies(alg: str) -> None:
    key = generate_jwk(alg)
    keys = JWTKeys.parse(keyset(key), SECRET)
    token = keys.sign({"sub": "u1", "exp": int(time.time()) + 60})
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["kid"]) == (alg, key["kid"])
    assert keys.verify(token)["sub"] == "u1"
    # Anyone with the published key verifies it too (what getClaims() does).
    [public] = keys.public_jwks()["keys"]
    assert "d" not in public
    assert public["key_ops"] == ["verify"]
    verified = jwt.decode(token, jwt.PyJWK(public).key, algorithms=[alg])
    assert verified["sub"] == "u1"


def test_every_key_in_the_set_and_the_secret_verify() -> None:
    old, new = generate_jwk("RS256"), generate_jwk("ES256")
    keys = JWTKeys.parse(keyset(verifying_only(old), new), SECRET)
    from_old = JWTKeys.parse(keyset(old), SECRET).sign({"sub": "old"})
    assert keys.verify(from_old)["sub"] == "old"
    anon_key = jwt.encode({"role": "anon"}, SECRET, algorithm="HS256")
    assert keys.verify(anon_key)["role"] == "anon"
    assert jwt.get_unverified_header(keys.sign({}))["kid"] == new["kid"]
    assert {k["kid"] for k in keys.public_jwks()["keys"]} == {old["kid"], new["kid"]}
    assert keys.algorithms == ["ES256", "HS256", "RS256"]


def test_a_symmetric_key_signs_with_its_kid_and_is_never_published() -> None:
    oct_key = {"kty": "oct", "k": "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg", "kid": "hs"}
    keys = JWTKeys.parse(keyset(oct_key | {"alg": "HS256", "key_ops": ["sign"]}), SECRET)
    token = keys.sign({"sub": "u"})
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "hs", "typ": "JWT"}
    assert keys.verify(token)["sub"] == "u"
    assert keys.public_jwks() == {"keys": []}


def test_without_keys_the_secret_signs_as_before() -> None:
    keys = JWTKeys.parse("", SECRET, "legacy")
    token = keys.sign({"sub": "u"})
    assert jwt.get_unverified_header(token)["kid"] == "legacy"
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == "u"
    assert keys.verify(token)["sub"] == "u"
    assert keys.public_jwks() == {"keys": []}
    assert JWTKeys.parse(" ", SECRET).sign({}).count(".") == 2


def test_a_token_is_refused_for_an_unknown_kid_a_wrong_alg_or_a_forged_signature() -> None:
    key = generate_jwk("ES256")
    keys = JWTKeys.parse(keyset(key), SECRET)
    stranger = JWTKeys.parse(keyset(generate_jwk("ES256")), SECRET).sign({"sub": "x"})
    with pytest.raises(jwt.InvalidTokenError, match="invalid kid"):
        keys.verify(stranger)
    # The published key used as an HMAC secret (the classic alg confusion).
    public = json.dumps(keys.public_jwks()["keys"][0])
    confused = jwt.encode({"sub": "x"}, "x" * 32, algorithm="HS256", headers={"kid": key["kid"]})
    with pytest.raises(jwt.InvalidTokenError):
        keys.verify(confused)
    with pytest.raises(jwt.InvalidTokenError):
        keys.verify(jwt.encode({"sub": "x"}, public + "-pad", algorithm="HS256"))
    numeric_kid = jwt.encode({"sub": "x"}, SECRET, algorithm="HS256").split(".")
    numeric_kid[0] = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":7}').decode().rstrip("=")
    with pytest.raises(jwt.InvalidTokenError):
        keys.verify(".".join(numeric_kid))
    expired = keys.sign({"sub": "x", "exp": int(time.time()) - 10})
    with pytest.raises(jwt.ExpiredSignatureError):
        keys.verify(expired)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{", "not JSON"),
        ('{"kty": "EC"}', "JSON array of JWK objects"),
        ("[1]", "JSON array of JWK objects"),
        ('[{"kty": "EC", "alg": "ES256"}]', 'key 0: needs a "kid"'),
        ('[{"kid": "a", "kty": "EC", "alg": "PS256"}]', '"alg" must be one of'),
        ('[{"kid": "a", "kty": "RSA", "alg": "ES256"}]', "alg ES256 needs kty 'EC'"),
        ('[{"kid": "a", "kty": "EC", "alg": "ES256", "key_ops": ["encrypt"]}]', "key_ops"),
        ('[{"kid": "a", "kty": "EC", "alg": "ES256", "crv": "P-256", "x": "zz"}]', "key 'a'"),
        ('[{"kid": "h", "kty": "oct", "alg": "HS256", "k": "c2hvcnQ"}]', "at least 32 bytes"),
    ],
)
def test_a_bad_key_set_is_refused_with_the_reason(value: str, message: str) -> None:
    with pytest.raises(JWTKeysError, match=message):
        JWTKeys.parse(value, SECRET)


def test_exactly_one_signing_key_and_private_keys_only() -> None:
    a, b = generate_jwk("ES256"), generate_jwk("ES256")
    with pytest.raises(JWTKeysError, match='2 keys have "sign"'):
        JWTKeys.parse(keyset(a, b), SECRET)
    with pytest.raises(JWTKeysError, match='no key has "sign"'):
        JWTKeys.parse(keyset(verifying_only(a)), SECRET)
    with pytest.raises(JWTKeysError, match="two keys have kid"):
        JWTKeys.parse(keyset(a, verifying_only(a)), SECRET)
    public_only = {name: a[name] for name in ("kty", "crv", "x", "y", "kid", "alg", "key_ops")}
    with pytest.raises(JWTKeysError, match="a private key is needed"):
        JWTKeys.parse(keyset(public_only), SECRET)


def test_generated_keys_are_new_each_time_and_only_asymmetric() -> None:
    first, second = generate_jwk("ES256"), generate_jwk("ES256")
    assert first["kid"] != second["kid"]
    assert first["d"] != second["d"]
    assert first["key_ops"] == ["sign", "verify"]
    with pytest.raises(JWTKeysError, match="cannot generate 'HS256'"):
        generate_jwk("HS256")


async def test_the_service_signs_with_the_signing_key_and_publishes_the_jwks(
    make_service: Callable[..., Any],
) -> None:
    old, new = generate_jwk("RS256"), generate_jwk("ES256")
    svc: Service = await make_service(jwt_keys=keyset(verifying_only(old), new))
    _, session = await signed_in(svc)
    header = jwt.get_unverified_header(session["access_token"])
    assert (header["alg"], header["kid"]) == ("ES256", new["kid"])
    assert (await svc.http.get("/user", headers=bearer(session))).status_code == 200
    # A token of the retiring key still verifies; one of a key not in the set does not.
    from_old = JWTKeys.parse(keyset(old), SERVICE_SECRET).sign(
        jwt.decode(session["access_token"], options={"verify_signature": False})
    )
    assert (await svc.http.get("/user", headers=bearer({"access_token": from_old}))).is_success
    stranger = JWTKeys.parse(keyset(generate_jwk("ES256")), SERVICE_SECRET).sign({"sub": "x"})
    refused = await svc.http.get("/user", headers=bearer({"access_token": stranger}))
    assert (refused.status_code, refused.json()["error_code"]) == (403, "bad_jwt")
    # The admin API still takes the project's HS256 service_role key.
    assert (await svc.http.get("/admin/users", headers=svc.admin_headers())).status_code == 200
    published = await svc.http.get("/.well-known/jwks.json")
    assert published.headers["cache-control"] == "public, max-age=600"
    assert {key["kid"] for key in published.json()["keys"]} == {old["kid"], new["kid"]}
    assert all("d" not in key for key in published.json()["keys"])


async def test_without_keys_the_jwks_is_empty_and_tokens_are_hs256(svc: Service) -> None:
    _, session = await signed_in(svc)
    assert jwt.get_unverified_header(session["access_token"])["alg"] == "HS256"
    assert (await svc.http.get("/.well-known/jwks.json")).json() == {"keys": []}

"""The keys that sign and verify access tokens: ``GOTRUE_JWT_KEYS``, as GoTrue reads it.

``GOTRUE_JWT_KEYS`` is a JSON array of private JWKs. Exactly one has ``sign``
in its ``key_ops``: it signs every new token with its ``alg``, and the token's
header names its ``kid``. Every key in the set verifies the tokens whose
header names it; ``GOTRUE_JWT_SECRET`` (HS256) verifies tokens without a
``kid`` or with ``GOTRUE_JWT_KEY_ID``, so the ``anon`` and ``service_role``
keys a Supabase project hands out keep working. With no ``GOTRUE_JWT_KEYS``,
the secret signs, as it always did.

``GET /.well-known/jwks.json`` publishes the public half of each asymmetric
key (:meth:`JWTKeys.public_jwks`); a symmetric key is never published.

Where we differ from GoTrue: every key must carry a ``kid`` and an ``alg``
that fits its type (GoTrue files a key without ``kid`` under ``""`` and signs
with HS256 when the ``alg`` is unknown, which fails only at the first
sign-in); a bad set stops the start with a message naming the variable.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

__all__ = ["ALGORITHMS", "JWTKeys", "JWTKeysError", "generate_jwk"]

# alg -> the JWK key type it needs (GoTrue's GetSigningAlg knows these).
ALGORITHMS = {
    "RS256": "RSA",
    "RS512": "RSA",
    "ES256": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
    "HS256": "oct",
}
_PUBLIC_MEMBERS = {
    "RSA": ("kty", "n", "e"),
    "EC": ("kty", "crv", "x", "y"),
    "OKP": ("kty", "crv", "x"),
}


class JWTKeysError(ValueError):
    """``GOTRUE_JWT_KEYS`` cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    alg: str
    kty: str
    signing: Any  # private key object, or the secret's bytes for HS256
    verifying: Any  # public key object, or the secret's bytes
    public: dict[str, Any] | None  # the JWK to publish; None for a symmetric key


@dataclass(frozen=True)
class JWTKeys:
    """The signing key and the verifying keys of one configuration."""

    secret: str
    secret_kid: str = ""
    _keys: dict[str, _Key] = field(default_factory=dict)
    _signer: _Key | None = None

    @classmethod
    def parse(cls, value: str, secret: str, secret_kid: str = "") -> JWTKeys:
        """Read ``GOTRUE_JWT_KEYS`` (``""``: the secret signs). Raises :class:`JWTKeysError`."""
        if not value.strip():
            return cls(secret, secret_kid)
        try:
            items = json.loads(value)
        except ValueError as exc:
            raise JWTKeysError(f"not JSON: {exc}") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise JWTKeysError("must be a JSON array of JWK objects")
        keys: dict[str, _Key] = {}
        for position, item in enumerate(items):
            key = _read_key(item, position)
            if key.kid in keys:
                raise JWTKeysError(f"two keys have kid {key.kid!r}")
            keys[key.kid] = key
        signers = [
            keys[str(item["kid"])] for item in items if "sign" in (item.get("key_ops") or [])
        ]
        if len(signers) != 1:
            found = "no key has" if not signers else f"{len(signers)} keys have"
            raise JWTKeysError(f'{found} "sign" in key_ops; exactly one must')
        return cls(secret, secret_kid, keys, signers[0])

    @property
    def algorithms(self) -> list[str]:
        """Every ``alg`` a token may be signed with: the set's and HS256 (the secret)."""
        return sorted({key.alg for key in self._keys.values()} | {"HS256"})

    def sign(self, claims: dict[str, Any]) -> str:
        """Sign ``claims`` with the signing key (or the secret), its ``kid`` in the header."""
        if self._signer is None:
            headers = {"kid": self.secret_kid} if self.secret_kid else None
            return jwt.encode(claims, self.secret, algorithm="HS256", headers=headers)
        key = self._signer
        return jwt.encode(claims, key.signing, algorithm=key.alg, headers={"kid": key.kid})

    def verify(self, token: str) -> dict[str, Any]:
        """Check ``token``'s signature and expiry (when it has one); return its claims.

        The header's ``kid`` picks the key; no ``kid`` (or ``GOTRUE_JWT_KEY_ID``)
        means the secret, HS256 only. The algorithm must be the key's own, so a
        public key can never be used as an HMAC secret.

        Raises:
            jwt.InvalidTokenError: unknown ``kid``, bad signature, malformed, expired.
        """
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")  # PyJWT has checked that it is a string
        key = self._keys.get(kid) if kid else None
        if key is not None:
            verifying, algorithms = key.verifying, [key.alg]
        elif not kid or kid == self.secret_kid:
            verifying, algorithms = self.secret.encode(), ["HS256"]
        else:
            raise jwt.InvalidTokenError(f"invalid kid: {kid}")
        claims: dict[str, Any] = jwt.decode(
            token,
            verifying,
            algorithms=algorithms,
            options={"verify_aud": False, "require": []},
        )
        return claims

    def public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWKS document: the public half of every asymmetric key, for verifying only."""
        return {"keys": [key.public for key in self._keys.values() if key.public is not None]}


def _read_key(item: dict[str, Any], position: int) -> _Key:
    where = f"key {position}"
    kid, alg, kty = item.get("kid"), item.get("alg"), item.get("kty")
    if not isinstance(kid, str) or not kid:
        raise JWTKeysError(f'{where}: needs a "kid" (a non-empty string)')
    where = f"key {kid!r}"
    if alg not in ALGORITHMS:
        raise JWTKeysError(f'{where}: "alg" must be one of {", ".join(ALGORITHMS)}, not {alg!r}')
    if kty != ALGORITHMS[alg]:
        raise JWTKeysError(f"{where}: alg {alg} needs kty {ALGORITHMS[alg]!r}, not {kty!r}")
    ops = item.get("key_ops") or []
    if not isinstance(ops, list) or not set(ops) <= {"sign", "verify"}:
        raise JWTKeysError(f'{where}: "key_ops" may hold only "sign" and "verify"')
    try:
        parsed = jwt.PyJWK(item, algorithm=alg)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise JWTKeysError(f"{where}: {exc}") from None
    if kty == "oct":
        if len(parsed.key) < 32:  # RFC 7518 3.2: at least the hash's size
            raise JWTKeysError(f"{where}: an HS256 key needs at least 32 bytes")
        return _Key(kid, alg, kty, parsed.key, parsed.key, None)
    private = parsed.key
    if not hasattr(private, "public_key"):
        raise JWTKeysError(f'{where}: a private key is needed (with "d")')
    public = private.public_key()
    published = {name: item[name] for name in _PUBLIC_MEMBERS[kty]}
    published |= {"kid": kid, "alg": alg, "use": "sig", "key_ops": ["verify"]}
    return _Key(kid, alg, kty, private, public, published)


def generate_jwk(alg: str) -> dict[str, Any]:
    """A new private JWK for ``alg`` with a random ``kid`` and ``key_ops`` sign and verify."""
    kty = ALGORITHMS.get(alg)
    if kty is None or kty == "oct":
        raise JWTKeysError(f"cannot generate {alg!r}: use one of RS256, RS512, ES256, ES512, EdDSA")
    jwk: dict[str, Any]
    if alg.startswith("RS"):
        jwk = RSAAlgorithm.to_jwk(
            rsa.generate_private_key(public_exponent=65537, key_size=2048), as_dict=True
        )
    elif alg == "ES256":
        jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)
    elif alg == "ES512":
        jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP521R1()), as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate(), as_dict=True)
    return jwk | {"kid": str(uuid.uuid4()), "alg": alg, "key_ops": ["sign", "verify"]}

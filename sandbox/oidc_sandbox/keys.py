"""RSA signing keys and their JWK form (RFC 7517), with the RFC 7638 thumbprint used as ``kid``."""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def b64url_uint(value: int) -> str:
    """Big-endian unsigned integer as unpadded base64url (the JWK encoding of ``n`` and ``e``)."""
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class SigningKey:
    """An RS256 key pair with a stable ``kid`` (its JWK SHA-256 thumbprint)."""

    def __init__(self, private_key: rsa.RSAPrivateKey | None = None):
        self.private_key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.private_key.public_key().public_numbers()
        self._n = b64url_uint(numbers.n)
        self._e = b64url_uint(numbers.e)
        self.kid = self.thumbprint()

    def thumbprint(self) -> str:
        """RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, no whitespace."""
        canonical = json.dumps({"e": self._e, "kty": "RSA", "n": self._n}, separators=(",", ":"), sort_keys=True)
        digest = hashlib.sha256(canonical.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        """Public JWK with ``kid``, ``use`` and ``alg`` (plus any ``extra`` members such as ``x5t``)."""
        jwk = {"kty": "RSA", "kid": self.kid, "e": self._e, "n": self._n, "use": "sig", "alg": "RS256"}
        jwk.update(extra)
        return jwk

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, typ: str | None = "JWT",
             extra_headers: dict[str, Any] | None = None) -> str:
        """RS256-sign ``claims``. ``kid`` defaults to this key's thumbprint; ``typ=None`` omits the header."""
        headers: dict[str, Any] = {"kid": kid or self.kid}
        if typ is not None:
            headers["typ"] = typ
        if extra_headers:
            headers.update(extra_headers)
        token = jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)
        if typ is None:
            # PyJWT always writes "typ": rebuild the header without it.
            _, payload, _sig = token.split(".")
            header = {"alg": "RS256", **{k: v for k, v in headers.items() if k != "typ"}}
            signing_input = _b64_json(header) + "." + payload
            signature = jwt.get_algorithm_by_name("RS256").sign(signing_input.encode("ascii"), self.private_key)
            token = signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode("ascii")
        return token


def _b64_json(obj: dict[str, Any]) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_key_from_jwk(jwk: dict[str, Any]) -> Any:
    """The ``cryptography`` public key of an RSA JWK; raises ``ValueError`` when it is not one."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
        raise ValueError("not an RSA JWK")
    try:
        return jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
    except Exception as exc:  # PyJWT raises InvalidKeyError / ValueError / binascii errors
        raise ValueError(f"bad RSA JWK: {exc}") from exc

"""JWT issuing (control plane) and verification (relayd), in one place.

Tokens are EdDSA (Ed25519) JWTs whose header ``kid`` names the key. The
verifier accepts only the algorithms in :data:`ALLOWED_ALGORITHMS` — never
``none``, never HMAC, whatever the token's header says — and requires
``iss``, ``aud``, ``sub``, ``exp``, ``iat``, ``jti`` and ``scope``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from wire.protocol import AUDIENCE, Scope

ALLOWED_ALGORITHMS: Final = ("EdDSA",)
REQUIRED_CLAIMS: Final = ("iss", "aud", "sub", "exp", "iat", "jti", "scope")
#: Clock skew tolerated between the control plane and relayd, in seconds.
DEFAULT_LEEWAY: Final = 30
#: Tokens whose signature a verifier remembers having checked. A reconnecting
#: client presents the token it had, and the Ed25519 check is most of a
#: handshake's CPU: a storm of reconnects then costs a dictionary look-up each.
VERIFIED_CACHE_SIZE: Final = 4096


class TokenError(Exception):
    """A token that must be refused; ``reason`` is a short word for logs and metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@attrs.frozen
class Claims:
    """The verified claims of a token."""

    sub: str
    scope: Scope
    exp: float
    iat: float
    jti: str
    iss: str
    #: The login (session) a client token belongs to; ends with it (logout).
    sid: str | None = None
    #: The user's token generation when it was issued; a password change raises it.
    gen: int | None = None


@attrs.frozen
class SigningKey:
    """One Ed25519 private key and its ``kid``."""

    kid: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        """A fresh key with a random ``kid``."""
        return cls(kid or uuid.uuid4().hex[:16], Ed25519PrivateKey.generate())

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK (``kty`` OKP, ``crv`` Ed25519)."""
        return public_jwk(self.kid, self.private_key.public_key())

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, kid: str, pem: bytes) -> SigningKey:
        """Load a key written by :meth:`private_pem`."""
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("signing key is not an Ed25519 private key")
        return cls(kid, key)


def public_jwk(kid: str, key: Ed25519PublicKey) -> dict[str, Any]:
    """A JWK for an Ed25519 public key."""
    jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(key))
    jwk.update({"kid": kid, "alg": "EdDSA", "use": "sig"})
    return jwk


def jwks_document(keys: list[dict[str, Any]]) -> dict[str, Any]:
    """A JWKS document (``{"keys": [...]}``)."""
    return {"keys": keys}


def issue_token(
    key: SigningKey,
    *,
    sub: str,
    scope: Scope,
    issuer: str,
    ttl_seconds: float,
    now: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Sign a token with every claim docs/protocol.md section 2 asks for."""
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": int(issued),
        "exp": int(issued + ttl_seconds),
        "jti": uuid.uuid4().hex,
        "scope": str(scope),
    }
    if extra:
        claims.update(extra)
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})


class TokenVerifier:
    """Checks tokens against a set of public keys chosen by ``kid``."""

    def __init__(
        self,
        keys: Mapping[str, Ed25519PublicKey],
        *,
        issuer: str,
        leeway: float = DEFAULT_LEEWAY,
    ) -> None:
        self._keys = dict(keys)
        self.issuer = issuer
        self.leeway = leeway
        # token -> its claims, for tokens already checked against these keys
        # (a new key set is a new verifier, so a removed key's tokens go too).
        # Only the signature and the claims' form are remembered: expiry and
        # scope are checked on every use, revocation by the caller.
        self._verified: dict[str, Claims] = {}

    @classmethod
    def from_jwks(
        cls, jwks: Mapping[str, Any], *, issuer: str, leeway: float = DEFAULT_LEEWAY
    ) -> TokenVerifier:
        """Build from a parsed JWKS document; keys that are not Ed25519 are skipped."""
        return cls(load_jwks_keys(jwks), issuer=issuer, leeway=leeway)

    @classmethod
    def from_jwks_file(
        cls, path: str | os.PathLike[str], *, issuer: str, leeway: float = DEFAULT_LEEWAY
    ) -> TokenVerifier:
        """Read a JWKS file (relayd re-reads it on SIGHUP)."""
        return cls.from_jwks(json.loads(Path(path).read_text()), issuer=issuer, leeway=leeway)

    @property
    def kids(self) -> frozenset[str]:
        """The key ids this verifier knows."""
        return frozenset(self._keys)

    def verify(self, token: str, *, scope: Scope | None = None, now: float | None = None) -> Claims:
        """Return the token's claims, or raise :class:`TokenError`.

        ``scope`` refusals raise with reason ``scope`` so the caller can answer
        403 rather than 401.
        """
        result = self._verified.get(token)
        if result is None:
            result = self._verify_signed(token, now)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                # Oldest first (dicts keep insertion order): a bounded memory.
                del self._verified[next(iter(self._verified))]
            self._verified[token] = result
        elif result.exp + self.leeway <= (time.time() if now is None else now):
            raise TokenError("expired", "token has expired")
        if scope is not None and result.scope != scope:
            raise TokenError("scope", f"token scope {result.scope} cannot open this endpoint")
        return result

    def _verify_signed(self, token: str, now: float | None) -> Claims:
        """Check a token's signature and claims (not its scope): the slow part."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed", "token is not a JWT") from None
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise TokenError("algorithm", "token algorithm is not allowed")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("unknown_kid", "token is signed by an unknown key")
        options: Any = {"require": list(REQUIRED_CLAIMS)}
        if now is not None:
            options = {**options, "verify_exp": False, "verify_iat": False}
        try:
            if now is None:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=list(ALLOWED_ALGORITHMS),
                    audience=AUDIENCE,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options=options,
                )
            else:
                # pyjwt reads the clock itself; check exp by hand for a given now.
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=list(ALLOWED_ALGORITHMS),
                    audience=AUDIENCE,
                    issuer=self.issuer,
                    options=options,
                )
                if float(claims["exp"]) + self.leeway <= now:
                    raise jwt.ExpiredSignatureError("expired")
        except jwt.ExpiredSignatureError:
            raise TokenError("expired", "token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("audience", "token is not for this relay") from None
        except jwt.InvalidIssuerError:
            raise TokenError("issuer", "token has the wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError("claims", f"token lacks claim {exc.claim}") from None
        except jwt.PyJWTError:
            raise TokenError("signature", "token signature or claims are invalid") from None
        try:
            token_scope = Scope(claims["scope"])
            result = Claims(
                sub=_nonempty(claims["sub"]),
                scope=token_scope,
                exp=float(claims["exp"]),
                iat=float(claims["iat"]),
                jti=str(claims["jti"]),
                iss=str(claims["iss"]),
                sid=_optional_str(claims.get("sid")),
                gen=_optional_int(claims.get("gen")),
            )
        except (ValueError, TypeError, OverflowError):  # OverflowError: float(10**400)
            raise TokenError("claims", "token claims are malformed") from None
        return result


def _optional_str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError("bad sid")
    return value


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("bad gen")
    return value


def _nonempty(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("empty sub")
    return value


def load_jwks_keys(jwks: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 public keys of a JWKS document, by ``kid``."""
    keys: dict[str, Ed25519PublicKey] = {}
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        raise ValueError("JWKS document has no 'keys' list")
    for entry in entries:
        if (
            not isinstance(entry, dict)
            or entry.get("kty") != "OKP"
            or entry.get("crv") != "Ed25519"
        ):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str):
            continue
        key = OKPAlgorithm.from_jwk(entry)
        if isinstance(key, Ed25519PublicKey):
            keys[kid] = key
    return keys

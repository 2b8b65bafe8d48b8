"""Token issue and verification: the allow-list and every required claim."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from wire.protocol import Scope
from wire.tokens import SigningKey, TokenError, TokenVerifier, issue_token, jwks_document


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("k1")


@pytest.fixture
def verifier(key: SigningKey) -> TokenVerifier:
    return TokenVerifier.from_jwks(jwks_document([key.public_jwk()]), issuer="ffcloud")


def test_valid_token(key: SigningKey, verifier: TokenVerifier) -> None:
    token = issue_token(key, sub="u1", scope=Scope.CLIENT, issuer="ffcloud", ttl_seconds=60)
    claims = verifier.verify(token, scope=Scope.CLIENT)
    assert claims.sub == "u1"
    assert claims.scope is Scope.CLIENT


def _reason(verifier: TokenVerifier, token: str, scope: Scope = Scope.CLIENT) -> str:
    with pytest.raises(TokenError) as info:
        verifier.verify(token, scope=scope)
    return info.value.reason


def test_wrong_scope(key: SigningKey, verifier: TokenVerifier) -> None:
    token = issue_token(key, sub="vm1", scope=Scope.VM, issuer="ffcloud", ttl_seconds=60)
    assert _reason(verifier, token) == "scope"


def test_expired(key: SigningKey, verifier: TokenVerifier) -> None:
    token = issue_token(
        key, sub="u", scope=Scope.CLIENT, issuer="ffcloud", ttl_seconds=60, now=time.time() - 3600
    )
    assert _reason(verifier, token) == "expired"


def test_wrong_issuer(key: SigningKey, verifier: TokenVerifier) -> None:
    token = issue_token(key, sub="u", scope=Scope.CLIENT, issuer="other", ttl_seconds=60)
    assert _reason(verifier, token) == "issuer"


def test_unknown_kid(verifier: TokenVerifier) -> None:
    other = SigningKey.generate("k2")
    token = issue_token(other, sub="u", scope=Scope.CLIENT, issuer="ffcloud", ttl_seconds=60)
    assert _reason(verifier, token) == "unknown_kid"


def test_forged_signature_with_known_kid(verifier: TokenVerifier) -> None:
    forger = SigningKey.generate("k1")  # same kid, different key
    token = issue_token(forger, sub="u", scope=Scope.CLIENT, issuer="ffcloud", ttl_seconds=60)
    assert _reason(verifier, token) == "signature"


def _b64(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    now = int(time.time())
    claims = {
        "iss": "ffcloud",
        "aud": "ffcloud-relay",
        "sub": "u",
        "exp": now + 60,
        "iat": now,
        "jti": "j",
        "scope": "client",
    }
    token = f"{_b64({'alg': 'none', 'kid': 'k1'})}.{_b64(claims)}."
    assert _reason(verifier, token) == "algorithm"


def test_hs256_signed_with_public_key_is_refused(key: SigningKey, verifier: TokenVerifier) -> None:
    public = key.private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    now = int(time.time())
    claims = {
        "iss": "ffcloud",
        "aud": "ffcloud-relay",
        "sub": "u",
        "exp": now + 60,
        "iat": now,
        "jti": "j",
        "scope": "client",
    }
    token = jwt.encode(claims, public, algorithm="HS256", headers={"kid": "k1"})
    assert _reason(verifier, token) == "algorithm"


def test_missing_scope_claim(key: SigningKey, verifier: TokenVerifier) -> None:
    now = int(time.time())
    claims = {
        "iss": "ffcloud",
        "aud": "ffcloud-relay",
        "sub": "u",
        "exp": now + 60,
        "iat": now,
        "jti": "j",
    }
    token = jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": "k1"})
    assert _reason(verifier, token) == "claims"


def test_wrong_audience(key: SigningKey, verifier: TokenVerifier) -> None:
    token = issue_token(
        key, sub="u", scope=Scope.CLIENT, issuer="ffcloud", ttl_seconds=60, extra={"aud": "other"}
    )
    assert _reason(verifier, token) == "audience"


def test_garbage(verifier: TokenVerifier) -> None:
    assert _reason(verifier, "not.a.jwt") == "malformed"


def test_pem_round_trip(key: SigningKey) -> None:
    again = SigningKey.from_pem("k1", key.private_pem())
    assert again.public_jwk() == key.public_jwk()

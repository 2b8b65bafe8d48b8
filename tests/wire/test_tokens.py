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


def test_a_remembered_token_still_expires_and_keeps_its_scope(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    token = issue_token(key, sub="u", scope=Scope.CLIENT, issuer="ffcloud", ttl_seconds=60)
    claims = verifier.verify(token, scope=Scope.CLIENT)
    # The second look-up is the remembered one: scope and expiry are still checked.
    assert verifier.verify(token, scope=Scope.CLIENT) == claims
    assert _reason(verifier, token, Scope.VM) == "scope"
    with pytest.raises(TokenError) as info:
        verifier.verify(token, now=claims.exp + verifier.leeway)
    assert info.value.reason == "expired"
    assert verifier.verify(token, now=claims.exp + verifier.leeway - 1) == claims


def test_a_refused_token_is_checked_again_every_time(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    token = issue_token(key, sub="u", scope=Scope.CLIENT, issuer="ffcloud", ttl_seconds=60)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for _ in range(2):
        assert _reason(verifier, forged) == "signature"


def test_remembered_tokens_are_bounded_and_end_with_their_key_set(key: SigningKey) -> None:
    from wire.tokens import VERIFIED_CACHE_SIZE

    verifier = TokenVerifier.from_jwks(jwks_document([key.public_jwk()]), issuer="ffcloud")
    first = issue_token(key, sub="u0", scope=Scope.CLIENT, issuer="ffcloud", ttl_seconds=60)
    verifier.verify(first)
    for i in range(VERIFIED_CACHE_SIZE + 10):
        verifier.verify(
            issue_token(key, sub=f"u{i + 1}", scope=Scope.CLIENT, issuer="ffcloud", ttl_seconds=60)
        )
    assert len(verifier._verified) == VERIFIED_CACHE_SIZE
    assert first not in verifier._verified
    # A rotated key set (relayd's SIGHUP makes a new verifier) forgets them all.
    rotated = TokenVerifier.from_jwks(
        jwks_document([SigningKey.generate("k2").public_jwk()]), issuer="ffcloud"
    )
    assert _reason(rotated, first) == "unknown_kid"

"""Test signing keys: a JWKS file for relayd and tokens minted with the same key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wire.protocol import DEFAULT_ISSUER, Scope
from wire.tokens import SigningKey, issue_token, jwks_document


class KeyRing:
    """One Ed25519 signing key (more can be added) that mints tokens for tests.

    ``client_token("u1")`` and ``vm_token("vm1")`` give valid tokens;
    ``token(...)`` takes every knob (scope, ttl, issuer, ``now``, extra claims).
    """

    def __init__(self, kid: str = "test-key", issuer: str = DEFAULT_ISSUER) -> None:
        self.issuer = issuer
        self.key = SigningKey.generate(kid)
        self.keys = [self.key]

    def add_key(self, kid: str) -> SigningKey:
        """Add another key (published by :meth:`jwks` from now on)."""
        key = SigningKey.generate(kid)
        self.keys.append(key)
        return key

    def jwks(self) -> dict[str, Any]:
        """The JWKS document of every public key."""
        return jwks_document([k.public_jwk() for k in self.keys])

    def write_jwks(self, path: Path) -> Path:
        """Write :meth:`jwks` to ``path`` (relayd re-reads it on SIGHUP)."""
        path.write_text(json.dumps(self.jwks()))
        return path

    def token(
        self,
        sub: str,
        scope: Scope,
        *,
        ttl: float = 300,
        issuer: str | None = None,
        key: SigningKey | None = None,
        now: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A signed token with every claim relayd requires."""
        return issue_token(
            key or self.key,
            sub=sub,
            scope=scope,
            issuer=issuer or self.issuer,
            ttl_seconds=ttl,
            now=now,
            extra=extra,
        )

    def client_token(self, user_id: str, *, ttl: float = 300) -> str:
        """A ``client`` token for a user."""
        return self.token(user_id, Scope.CLIENT, ttl=ttl)

    def vm_token(self, vm_id: str, *, ttl: float = 300) -> str:
        """A ``vm`` token for a VM."""
        return self.token(vm_id, Scope.VM, ttl=ttl)

"""The signing keys: generated on first start, rotated by ``controlplane keys rotate``.

Layout in the state dir::

    keys/keys.json      [{kid, createdAt, retiredAt?, dropAfter?}, ...]
    keys/<kid>.pem      the private key (mode 0600)
    jwks.json           the public keys, for relayd

The newest key that is not retired signs. A retired key stays published
until ``dropAfter`` (its retirement plus the longest token lifetime), so the
tokens it signed keep working until they expire.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from controlplane.statedir import secure_dir
from wire.atomicfile import write_atomic
from wire.tokens import SigningKey, TokenVerifier, jwks_document


@attrs.frozen
class KeyEntry:
    """One key and its life."""

    key: SigningKey
    created_at: float
    retired_at: float | None = None
    drop_after: float | None = None


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only, atomically."""
    write_atomic(path, data, 0o600)


def _write_public(path: Path, text: str) -> None:
    write_atomic(path, text.encode(), 0o644)


class KeyRing:
    """The control plane's keys in ``STATE_DIR/keys``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / "keys"
        self.entries: list[KeyEntry] = []

    @property
    def index_path(self) -> Path:
        """The key list."""
        return self.dir / "keys.json"

    @property
    def jwks_path(self) -> Path:
        """The public keys for relayd."""
        return self.state_dir / "jwks.json"

    def load(self, *, now: float | None = None) -> None:
        """Read the keys; generate the first one when there is none."""
        moment = time.time() if now is None else now
        secure_dir(self.dir)
        entries: list[KeyEntry] = []
        if self.index_path.exists():
            for item in json.loads(self.index_path.read_text()):
                drop_after = item.get("dropAfter")
                if drop_after is not None and drop_after <= moment:
                    continue  # every token it signed has expired
                pem = (self.dir / f"{item['kid']}.pem").read_bytes()
                entries.append(
                    KeyEntry(
                        SigningKey.from_pem(item["kid"], pem),
                        created_at=item["createdAt"],
                        retired_at=item.get("retiredAt"),
                        drop_after=drop_after,
                    )
                )
        self.entries = entries
        if not any(e.retired_at is None for e in entries):
            self._add(SigningKey.generate(), moment)
        self.save()

    def _add(self, key: SigningKey, now: float) -> None:
        write_private_file(self.dir / f"{key.kid}.pem", key.private_pem())
        self.entries.append(KeyEntry(key, created_at=now))

    def rotate(self, longest_token_ttl: float, *, now: float | None = None) -> SigningKey:
        """Retire the signing key (kept for ``longest_token_ttl``) and add a new one."""
        moment = time.time() if now is None else now
        self.entries = [
            attrs.evolve(e, retired_at=moment, drop_after=moment + longest_token_ttl)
            if e.retired_at is None
            else e
            for e in self.entries
        ]
        key = SigningKey.generate()
        self._add(key, moment)
        self.save()
        return key

    def save(self) -> None:
        """Write the key list and the public JWKS; remove dropped private keys."""
        index: list[dict[str, Any]] = []
        for e in self.entries:
            item: dict[str, Any] = {"kid": e.key.kid, "createdAt": e.created_at}
            if e.retired_at is not None:
                item["retiredAt"] = e.retired_at
                item["dropAfter"] = e.drop_after
            index.append(item)
        write_private_file(self.index_path, json.dumps(index, indent=2).encode())
        kept = {f"{e.key.kid}.pem" for e in self.entries}
        for pem in self.dir.glob("*.pem"):
            if pem.name not in kept:
                pem.unlink()
        _write_public(self.jwks_path, json.dumps(self.jwks(), indent=2))

    @property
    def signing_key(self) -> SigningKey:
        """The key that signs new tokens."""
        current = [e for e in self.entries if e.retired_at is None]
        return max(current, key=lambda e: e.created_at).key

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every published key, by ``kid``."""
        return {e.key.kid: e.key.private_key.public_key() for e in self.entries}

    def jwks(self) -> dict[str, Any]:
        """The JWKS document of every published key."""
        return jwks_document([e.key.public_jwk() for e in self.entries])

    def verifier(self, issuer: str) -> TokenVerifier:
        """A verifier that accepts tokens signed by any published key."""
        return TokenVerifier(self.public_keys(), issuer=issuer)

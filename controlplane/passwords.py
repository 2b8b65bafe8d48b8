"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile)."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

#: Longest password accepted; argon2 would take any length, the request body not.
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (slow on purpose: call from a worker thread)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash, spend the same time and say no.

    Unknown users are checked against a dummy hash so that the time taken
    does not tell whether a user name exists.
    """
    try:
        _hasher.verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    # verify() raises on a mismatch; the dummy hash must never let anyone in.
    return password_hash is not None


@cache
def _dummy_hash() -> str:
    return _hasher.hash("not a password of anyone")

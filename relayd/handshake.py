"""The opening handshake's checks, as one pure function (no socket).

Everything is decided before the connection is accepted, and a refusal is an
HTTP response: 404 for a path relayd does not serve, 400 without the
``ffcloud.v1`` subprotocol, 401 for a missing, bad or expired token (and for a
token in the query string, which would end up in access logs), 403 for a
foreign Origin or a token of the wrong scope; 401 ``token_revoked`` for a
token on the revocation list (:mod:`relayd.revocations`). The connection limit per user is
checked later by the caller, which knows how many connections are open (429).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import attrs

from wire.messages import dumps
from wire.protocol import BEARER_SUBPROTOCOL_PREFIX, CLIENT_PATH, SUBPROTOCOL, VM_PATH, Scope
from wire.tokens import Claims, TokenError, TokenVerifier

_PATHS: Final = {CLIENT_PATH: Scope.CLIENT, VM_PATH: Scope.VM}
_TOKEN_PARAMS: Final = frozenset(
    {"token", "access_token", "jwt", "bearer", "auth", "authorization"}
)
_JWT_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


@attrs.frozen
class Accepted:
    """The handshake passed: who is connecting, to which endpoint."""

    scope: Scope
    claims: Claims
    subprotocol: str = SUBPROTOCOL


@attrs.frozen
class Refused:
    """The handshake failed: an HTTP status and a short reason (for logs and metrics)."""

    status: int
    reason: str
    message: str

    def body(self) -> bytes:
        """The JSON error body sent with the refusal."""
        return dumps({"error": {"code": self.reason, "message": self.message}}).encode()


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """Every value of one header (names compared case-insensitively)."""
    lname = name.lower()
    return [v.decode("latin-1") for k, v in headers if k.lower() == lname]


def check_handshake(
    *,
    target: str,
    headers: Iterable[tuple[bytes, bytes]],
    subprotocols: Iterable[str],
    verifier: TokenVerifier,
    allowed_origins: Iterable[str],
    revoked: Callable[[Claims], str | None] | None = None,
) -> Accepted | Refused:
    """Decide whether to accept an opening handshake."""
    headers = list(headers)
    offered = list(subprotocols)
    try:
        url = urlsplit(target)
    except ValueError:  # e.g. "//[": an unclosed IPv6 bracket; no path of ours
        url = None
    scope = _PATHS.get(url.path) if url is not None else None
    if url is None or scope is None:
        return Refused(404, "not_found", "relayd serves /v1/client and /v1/vm")
    if SUBPROTOCOL not in offered:
        return Refused(400, "subprotocol", f"offer the WebSocket subprotocol {SUBPROTOCOL}")
    if url.query and _query_has_token(url.query):
        return Refused(
            401,
            "query_token",
            "tokens in the URL are refused; use the Authorization header "
            "or the bearer.<jwt> subprotocol",
        )
    origins = header(headers, b"origin")
    if origins:
        allowed = {o.lower().rstrip("/") for o in allowed_origins}
        if len(origins) > 1 or origins[0].lower().rstrip("/") not in allowed:
            return Refused(403, "origin", "this Origin is not allowed")
    token = _find_token(headers, offered)
    if isinstance(token, Refused):
        return token
    try:
        claims = verifier.verify(token, scope=scope)
    except TokenError as exc:
        if exc.reason == "scope":
            return Refused(403, "scope", str(exc))
        return Refused(401, f"token_{exc.reason}", str(exc))
    reason = revoked(claims) if revoked is not None else None
    if reason is not None:
        return Refused(401, "token_revoked", f"token revoked: {reason}")
    return Accepted(scope=scope, claims=claims)


def _query_has_token(query: str) -> bool:
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() in _TOKEN_PARAMS or _JWT_SHAPE.fullmatch(value):
            return True
    return False


def _find_token(headers: list[tuple[bytes, bytes]], offered: list[str]) -> str | Refused:
    authorization = header(headers, b"authorization")
    bearers = [p[len(BEARER_SUBPROTOCOL_PREFIX) :] for p in offered if p.startswith("bearer.")]
    if len(authorization) > 1 or len(bearers) > 1:
        return Refused(400, "token_ambiguous", "send exactly one token")
    if authorization:
        scheme, _, token = authorization[0].strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Refused(401, "token_missing", "Authorization must be 'Bearer <jwt>'")
        if bearers and bearers[0] != token.strip():
            return Refused(400, "token_ambiguous", "send exactly one token")
        return token.strip()
    if bearers and bearers[0]:
        return bearers[0]
    return Refused(401, "token_missing", "no token: send Authorization: Bearer <jwt>")

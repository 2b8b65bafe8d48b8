"""Revoked tokens: what relayd refuses although the signature is good.

relayd keeps one merged list (:mod:`wire.revocations`) from two sources:
the control plane's ``revoke`` requests (the whole list, after every
``sync`` and whenever it changes) and the file the control plane writes
beside ``jwks.json`` (read at start and on SIGHUP). Lists only grow, so
they are merged, never replaced: a revoked VM stays refused while the
control plane is away, and after a relayd restart from the file.

Checked at the handshake (401 ``token_revoked``), on ``auth`` (the new
token is refused) and, when a list arrives, against every open connection:
those whose current token it refuses are closed with 4403.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from wire.protocol import CloseCode
from wire.revocations import Revocations, merge, prune, read_file
from wire.tokens import Claims

log = logging.getLogger("relayd.revocations")


class _Closable(Protocol):
    claims: Claims

    def close(self, code: int, reason: str = "") -> None: ...


class RevocationState:
    """The merged list; entries whose tokens have all expired are dropped as lists come."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.current = Revocations()
        self._clock = clock

    def add(self, more: Revocations) -> None:
        """Merge ``more`` in."""
        self.current = prune(merge(self.current, more), self._clock())

    def refuses(self, claims: Claims) -> str | None:
        """Why a token is revoked, or None."""
        return self.current.refuses(claims)

    def close_revoked(self, peers: Iterable[_Closable]) -> int:
        """Close (4403) every peer whose current token is revoked; returns how many."""
        closed = 0
        for peer in peers:
            reason = self.refuses(peer.claims)
            if reason is not None:
                peer.close(CloseCode.CUT_OFF, f"token revoked: {reason}")
                closed += 1
        return closed

    def load_file(self, path: str) -> bool:
        """Merge the list in ``path`` (a missing file is an empty list); False when unreadable."""
        try:
            more = read_file(path)
        except (OSError, ValueError) as exc:
            log.error(
                "revocation list unreadable; keeping what is known",
                extra={"path": path, "error": str(exc)},
            )
            return False
        self.add(more)
        log.info(
            "revocation list read",
            extra={
                "path": path,
                "sessions": len(self.current.sessions),
                "users": len(self.current.users),
                "vms": len(self.current.vms),
            },
        )
        return True

"""Events relayd writes to the control plane, and the audit buffer for when none listens.

Events go to every connected control-socket peer. ``audit`` events that occur
while none is connected are kept in a bounded buffer (its overflow is counted
in ``stats``) and written to the next peer that connects; other events are
state the control plane learns again after its ``sync``.
"""

from __future__ import annotations

import collections
from typing import Any

from relayd.outbox import Outbox
from relayd.stats import Stats
from wire.codec import dumps


class ControlConnection:
    """One control-socket peer's outgoing lines."""

    def __init__(self, max_lines: int, max_chars: int, name: str) -> None:
        self.outbox = Outbox(max_lines, max_chars)
        self.name = name

    def send(self, obj: dict[str, Any]) -> bool:
        """Queue one JSON line; False when the peer is not keeping up (it is then closed)."""
        # dumps, not json.dumps: a lone surrogate (in a request id echoed back,
        # an id, an issue) must not make a line the socket writer cannot encode.
        line = dumps(obj) + "\n"
        if self.outbox.offer(line):
            return True
        self.outbox.close()
        return False


class ControlHub:
    """Who listens on the control socket, and the audit events nobody heard yet."""

    def __init__(self, audit_limit: int, stats: Stats) -> None:
        self.connections: set[ControlConnection] = set()
        self._audit: collections.deque[dict[str, Any]] = collections.deque()
        self._audit_limit = max(audit_limit, 0)
        self._stats = stats

    @property
    def buffered_audit(self) -> int:
        """Audit events waiting for a control plane."""
        return len(self._audit)

    def attach(self, conn: ControlConnection) -> None:
        """A control plane connected: it gets the audit events it missed."""
        self.connections.add(conn)
        while self._audit:
            if not conn.send(self._audit.popleft()):
                self._stats.audit_overflow += 1

    def detach(self, conn: ControlConnection) -> None:
        """A control plane went away."""
        self.connections.discard(conn)

    def emit(self, event: dict[str, Any]) -> None:
        """Write an event to every control plane, or keep it if it is an audit."""
        delivered = False
        for conn in list(self.connections):
            if conn.send(event):
                delivered = True
            else:
                self.connections.discard(conn)
        if delivered or event.get("type") != "audit":
            return
        if len(self._audit) >= self._audit_limit:
            self._stats.audit_overflow += 1
            if not self._audit:
                return
            self._audit.popleft()  # keep the newest: the oldest is the least useful
        self._audit.append(event)

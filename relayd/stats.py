"""Counters relayd keeps for ``stats`` and the metrics endpoint."""

from __future__ import annotations

import attrs


@attrs.define
class Stats:
    """Running totals since relayd started."""

    client_connections: int = 0
    vm_connections: int = 0
    messages_in: int = 0
    vm_frames_in: int = 0
    messages_out: int = 0
    forwarded: int = 0
    slow_closes: int = 0
    rate_limited: int = 0
    refused: int = 0
    subscribes: int = 0
    snapshot_requests: int = 0
    snapshots: int = 0
    audit_overflow: int = 0
    refused_reasons: dict[str, int] = attrs.Factory(dict)

"""Counters relayd keeps for ``stats`` and the metrics endpoint.

Plain integers and dicts, bumped on the hot path and read when scraped.
"""

from __future__ import annotations

import bisect
from typing import Final

import attrs

#: Upper bounds (seconds) of the snapshot-latency histogram's buckets.
SNAPSHOT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@attrs.define
class Histogram:
    """Cumulative-at-read histogram: counts per bucket, plus sum and count."""

    bounds: tuple[float, ...]
    counts: list[int]
    total: float = 0.0
    count: int = 0

    @classmethod
    def with_bounds(cls, bounds: tuple[float, ...]) -> Histogram:
        """An empty histogram (one extra bucket for +Inf)."""
        return cls(bounds, [0] * (len(bounds) + 1))

    def observe(self, value: float) -> None:
        """Add one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus wants them, ending with ``+Inf``."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


def _by_type() -> dict[str, int]:
    return {}


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
    replays: int = 0
    #: Readers whose place fell out of a room's log (each gets a fresh snapshot).
    fell_behind: int = 0
    snapshot_requests: int = 0
    snapshots: int = 0
    audit_overflow: int = 0
    #: ``request`` s forwarded, ``reply`` s delivered, and replies dropped
    #: because no connection waits for them (stale, unknown or its client gone).
    requests: int = 0
    replies: int = 0
    stale_replies: int = 0
    #: Requests relayd ended itself after ``--request-timeout`` (the VM never answered).
    request_timeouts: int = 0
    #: Terminal frames (``terminal_output``/``terminal_exit``) delivered, and
    #: those dropped with no connection of theirs to go to.
    terminal_frames: int = 0
    stale_terminal_frames: int = 0
    #: Connections closed with 1011 because handling them raised.
    internal_errors: int = 0
    #: VM frames dropped, by reason (``bad_json``, ``repeated_key``, or the error code).
    vm_drops: dict[str, int] = attrs.Factory(_by_type)
    refused_reasons: dict[str, int] = attrs.Factory(_by_type)
    #: Frames and characters in, by ``source:type`` (source ``client`` or ``vm``).
    in_count: dict[str, int] = attrs.Factory(_by_type)
    in_chars: dict[str, int] = attrs.Factory(_by_type)
    #: Frames and characters out, by ``destination:type``.
    out_count: dict[str, int] = attrs.Factory(_by_type)
    out_chars: dict[str, int] = attrs.Factory(_by_type)
    snapshot_latency: Histogram = attrs.Factory(lambda: Histogram.with_bounds(SNAPSHOT_BUCKETS))

    def count_in(self, key: str, chars: int, frames: int = 1) -> None:
        """Frames in (one, unless told)."""
        self.in_count[key] = self.in_count.get(key, 0) + frames
        self.in_chars[key] = self.in_chars.get(key, 0) + chars

    def count_out(self, key: str, frames: int, chars: int) -> None:
        """Frames out."""
        self.out_count[key] = self.out_count.get(key, 0) + frames
        self.out_chars[key] = self.out_chars.get(key, 0) + chars

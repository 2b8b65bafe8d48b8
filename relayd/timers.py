"""Every peer's timers in one heap, fired by one task for the whole process.

A connection has four things to time (the next ping, its token's expiry, a
write that stalls, the close timeout), and a task of its own to sleep for
them would be most of what an idle connection costs. Instead each peer keeps
its next due time here; one task sleeps until the earliest and calls that
peer back (synchronously: a callback never waits). An entry is a small
handle, not the peer: a peer that leaves drops its handle's reference, and
the entry is skipped when its time comes.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio


class Timed(Protocol):
    """What a peer offers the timers."""

    def on_timer(self, now: float) -> float:
        """Its timers at ``now``: do what is due, return the next due time (inf: none)."""
        ...


class TimerHandle:
    """A peer's place in the heap: its latest due time, and the peer while it lives."""

    __slots__ = ("at", "owner")

    def __init__(self, owner: Timed) -> None:
        self.owner: Timed | None = owner
        self.at = math.inf


class Timers:
    """The heap of due times and the task that fires them."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._order = itertools.count()
        #: The task's sleep, moved earlier when an earlier time comes in.
        self._sleep: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, handle: TimerHandle, at: float) -> None:
        """Have ``handle``'s owner called back at ``at`` (replacing its due time)."""
        handle.at = at
        if at == math.inf or handle.owner is None:
            return
        heapq.heappush(self._heap, (at, next(self._order), handle))
        sleep = self._sleep
        if sleep is not None and at < sleep.deadline:
            sleep.deadline = at

    def earlier(self, handle: TimerHandle, at: float) -> None:
        """Have ``handle``'s owner called back by ``at`` at the latest."""
        if at < handle.at:
            self.schedule(handle, at)

    @staticmethod
    def cancel(handle: TimerHandle) -> None:
        """The owner is gone: never call it again."""
        handle.owner = None
        handle.at = math.inf

    async def run(self) -> None:
        """Fire due timers until cancelled."""
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                at, _, handle = heapq.heappop(heap)
                owner = handle.owner
                if owner is None or handle.at != at:
                    continue  # gone, or moved since
                handle.at = math.inf
                self.schedule(handle, owner.on_timer(now))
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None

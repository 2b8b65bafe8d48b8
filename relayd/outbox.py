"""A bounded queue of outgoing frames, bounded by count and by characters.

A trio memory channel bounds only the count, and frames vary from a few bytes
to 16 MiB; a queue of one peer must bound its memory. Two ways in:
:meth:`Outbox.offer` never waits (fan-out to clients, relayd's own frames to
a VM: a full queue means the peer is too slow, and the caller closes it), and
:meth:`Outbox.put` waits for room (client messages to a VM: the client is not
read meanwhile, which is how a fast client is slowed down). One consumer takes
frames with :meth:`Outbox.wait` and :meth:`Outbox.take` (or
:meth:`Outbox.get_batch`, both at once).
"""

from __future__ import annotations

import collections

import trio


class OutboxClosed(Exception):
    """The outbox was closed: its peer is going away."""


class Outbox:
    """Frames waiting for one peer's writer."""

    def __init__(self, max_messages: int, max_chars: int) -> None:
        self.max_messages = max(max_messages, 1)
        self.max_chars = max(max_chars, 1)
        self._frames: collections.deque[str] = collections.deque()
        self._chars = 0
        self._closed = False
        self._readable = trio.Event()
        self._writable = trio.Event()
        self._writable.set()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def chars(self) -> int:
        """Characters queued."""
        return self._chars

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _fits(self, frame: str, limit_share: float = 1.0) -> bool:
        if not self._frames:
            return True  # one frame always fits, however large (the frame limit bounds it)
        return (
            len(self._frames) < self.max_messages * limit_share
            and self._chars + len(frame) <= self.max_chars * limit_share
        )

    def offer(self, frame: str) -> bool:
        """Queue a frame without waiting; False when the queue is full or closed."""
        # _fits and _push written out: this runs once per frame per client.
        frames = self._frames
        if self._closed or (
            frames
            and (len(frames) >= self.max_messages or self._chars + len(frame) > self.max_chars)
        ):
            return False
        frames.append(frame)
        self._chars += len(frame)
        self._readable.set()
        return True

    async def put(self, frame: str) -> None:
        """Queue a frame, waiting while the queue is more than half full.

        Waiting writers leave the other half to :meth:`offer`, so relayd's own
        frames to a VM still fit while clients are held back.
        """
        while True:
            if self._closed:
                raise OutboxClosed
            if self._fits(frame, 0.5):
                self._push(frame)
                await trio.lowlevel.checkpoint()
                return
            if self._writable.is_set():
                self._writable = trio.Event()
            await self._writable.wait()

    def _push(self, frame: str) -> None:
        self._frames.append(frame)
        self._chars += len(frame)
        self._readable.set()

    async def wait(self) -> None:
        """Wait until a frame is queued; raises :class:`OutboxClosed` once closed."""
        while not self._frames:
            if self._closed:
                raise OutboxClosed
            if self._readable.is_set():
                self._readable = trio.Event()
            await self._readable.wait()

    async def get_batch(self, max_chars: int) -> list[str]:
        """Wait for frames and take them, up to ``max_chars`` characters (at least one)."""
        await self.wait()
        return self.take(max_chars)

    def take(self, max_chars: int) -> list[str]:
        """Take queued frames up to ``max_chars`` characters (at least one, if any)."""
        if self._closed:
            raise OutboxClosed
        if not self._frames:
            return []
        batch = [self._frames.popleft()]
        size = len(batch[0])
        while self._frames and size + len(self._frames[0]) <= max_chars:
            frame = self._frames.popleft()
            size += len(frame)
            batch.append(frame)
        self._chars -= size
        self._writable.set()
        return batch

    def close(self) -> None:
        """Drop what is queued and wake everyone; further use raises :class:`OutboxClosed`."""
        self._closed = True
        self._frames.clear()
        self._chars = 0
        self._readable.set()
        self._writable.set()

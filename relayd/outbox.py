"""A bounded queue of outgoing frames, bounded by count and by characters.

A trio memory channel bounds only the count, and frames vary from a few bytes
to 16 MiB; a queue of one peer must bound its memory. Two ways in:
:meth:`Outbox.offer` never waits (relayd's own frames: errors to a client,
assignments and snapshot requests to a VM; a full queue means the peer is not
reading, and the caller closes it), and :meth:`Outbox.put` waits for room
(client messages to a VM: the client is not read meanwhile, which is how a
fast client is slowed down). One consumer takes frames with
:meth:`Outbox.wait` and :meth:`Outbox.take` (or :meth:`Outbox.get_batch`,
both at once); :meth:`Outbox.poke` wakes it with nothing queued (a client's
writer also reads the rooms' logs, :mod:`relayd.room`).

What a VM sends to a room's subscribers never passes through here: it sits
once in the room's log, as :class:`SharedFrames` chunks that every
subscriber's writer sends from.
"""

from __future__ import annotations

import collections

import trio


class OutboxClosed(Exception):
    """The outbox was closed: its peer is going away."""


class SharedFrames:
    """Consecutive frames of a room's log, as one entry for every subscriber.

    The frames of one run of a VM read go to each subscriber in the same
    order: they are one object in the log, and the first writer to send it
    whole leaves its encoding here (``encoded``, ``counts``) for the others
    (:meth:`relayd.wsframes.FrameCache.encode`).
    """

    __slots__ = ("chars", "counts", "encoded", "frames")

    def __init__(
        self, frames: list[str], chars: int, counts: dict[str, list[int]] | None = None
    ) -> None:
        self.frames = frames
        #: Characters in all the frames.
        self.chars = chars
        self.encoded: bytes | None = None
        #: ``type -> [frames, characters]``, for the metrics (None: not counted yet).
        self.counts = counts

    def __len__(self) -> int:
        return len(self.frames)


Entry = str | SharedFrames


def entry_size(entry: Entry) -> int:
    """Characters of a queued entry."""
    return len(entry) if type(entry) is str else entry.chars  # type: ignore[union-attr]


class Outbox:
    """Frames waiting for one peer's writer (its one consumer).

    It costs an idle peer a few words: the queue is made with its first
    frame, and the consumer waits as a parked task, not on an event object.
    """

    __slots__ = (
        "_chars",
        "_closed",
        "_count",
        "_frames",
        "_poked",
        "_waiter",
        "_writable",
        "max_chars",
        "max_messages",
    )

    def __init__(self, max_messages: int, max_chars: int) -> None:
        self.max_messages = max(max_messages, 1)
        self.max_chars = max(max_chars, 1)
        self._frames: collections.deque[Entry] | None = None
        #: Frames queued (a shared entry counts its frames) and their characters.
        self._count = 0
        self._chars = 0
        self._closed = False
        self._poked = False
        #: The consumer's task while it waits in :meth:`wait`.
        self._waiter: trio.lowlevel.Task | None = None
        #: Set while :meth:`put` may go on (made by the first ``put`` that waits).
        self._writable: trio.Event | None = None

    def __len__(self) -> int:
        return self._count

    @property
    def chars(self) -> int:
        """Characters queued."""
        return self._chars

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _fits(self, frame: str, limit_share: float = 1.0) -> bool:
        if not self._count:
            return True  # one frame always fits, however large (the frame limit bounds it)
        return (
            self._count < self.max_messages * limit_share
            and self._chars + len(frame) <= self.max_chars * limit_share
        )

    def offer(self, frame: str) -> bool:
        """Queue a frame without waiting; False when the queue is full or closed."""
        if self._closed or (
            self._count
            and (self._count >= self.max_messages or self._chars + len(frame) > self.max_chars)
        ):
            return False
        self._push(frame)
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
            if self._writable is None or self._writable.is_set():
                self._writable = trio.Event()
            await self._writable.wait()

    def _push(self, frame: str) -> None:
        frames = self._frames
        if frames is None:
            frames = self._frames = collections.deque()
        frames.append(frame)
        self._count += 1
        self._chars += len(frame)
        self._wake()

    def _wake(self) -> None:
        task = self._waiter
        if task is not None:
            self._waiter = None
            trio.lowlevel.reschedule(task)

    def poke(self) -> None:
        """Wake the consumer though nothing is queued (it has other work)."""
        self._poked = True
        self._wake()

    async def wait(self) -> None:
        """Wait until a frame is queued or a poke; raises :class:`OutboxClosed` once closed."""
        while not self._count:
            if self._closed:
                raise OutboxClosed
            if self._poked:
                self._poked = False
                return
            self._waiter = trio.lowlevel.current_task()

            def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)

    async def get_batch(self, max_chars: int) -> list[str]:
        """Wait for frames and take them, up to ``max_chars`` characters (at least one)."""
        await self.wait()
        return self.take(max_chars)

    def take(self, max_chars: int) -> list[str]:
        """Take queued frames up to ``max_chars`` characters (at least one, if any)."""
        frames: list[str] = []
        for entry in self.take_entries(max_chars):
            if type(entry) is str:
                frames.append(entry)
            else:
                frames.extend(entry.frames)  # type: ignore[union-attr]
        return frames

    def take_entries(self, max_chars: int) -> list[Entry]:
        """Take queued entries up to ``max_chars`` characters (at least one, if any)."""
        if self._closed:
            raise OutboxClosed
        self._poked = False
        queued = self._frames
        if not queued:
            return []
        batch = [queued.popleft()]
        size = entry_size(batch[0])
        while queued and size + entry_size(queued[0]) <= max_chars:
            entry = queued.popleft()
            size += entry_size(entry)
            batch.append(entry)
        self._count -= sum([1 if type(e) is str else len(e) for e in batch])
        self._chars -= size
        if self._writable is not None:
            self._writable.set()
        return batch

    def close(self) -> None:
        """Drop what is queued and wake everyone; further use raises :class:`OutboxClosed`."""
        self._closed = True
        self._frames = None
        self._count = 0
        self._chars = 0
        self._wake()
        if self._writable is not None:
            self._writable.set()

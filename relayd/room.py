"""One session's room as a pure state machine: one log, a cursor per subscriber.

A workspace holds several sessions, each its own log (docs/protocol.md,
"Sessions"): relayd has a :class:`Room` per (workspace, session), and the
rooms of one workspace share a :class:`Workspace`, which keeps what its
``statusOnly`` subscribers see: the status of its most urgent session
(:mod:`relayd.aggregate`), or ``offline``.

The room does no I/O. Its inputs are what happened (a client subscribed, the
VM sent frames, a snapshot arrived, the VM went away or came back, a client's
writer wants the next frames); its outputs are :class:`Wake` (these cursors
have something to send), :class:`RequestSnapshot` from the VM, a
:class:`StatusChanged` for the control plane and :class:`Anomaly` lines for
the log.

The guarantee it keeps (docs/protocol.md, "Guarantees"): each subscribed
client gets the sequenced messages of its session in order, with no gap and
no duplicate, starting right after its snapshot or its ``lastSeq``; a client
that keeps reading is never dropped for being slow.

How: the room keeps the VM's recent frames in one bounded log covering seqs
``(base, head]`` of the current ``epoch`` (by count and characters: the
replay buffer's settings), as chunks (one per run of a VM read, shared by
every reader with its encoding, :class:`relayd.outbox.SharedFrames`). Every
subscriber has a :class:`Cursor`: the next seq it is owed, and a few frames
of the relay's own to send at given places in its stream (``subscribed``, a
snapshot, ``status offline``). A client's writer reads from its cursors at
its own pace (:meth:`Room.read`); nobody holds a copy of the live stream.

A cursor is *live* (it reads the log from ``next``), *waiting* for a
snapshot (request id, or none while the VM is away), or *status only* (it
gets the workspace's aggregate status whenever it changes). A live cursor whose
``next`` falls out of the log is not an error: it gets, in-band, a fresh
``subscribed`` (mode ``snapshot``) and waits for a snapshot like a newcomer.
All waiting cursors share one ``snapshot_request`` (per room, at most one is
pending); a snapshot at seq ``S`` moves each of them to ``next = S + 1``, so
live frames that came meanwhile are read from the log after it and frames the
snapshot covers are skipped. If the log no longer reaches back to ``S`` the
room asks again.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Hashable, Iterable
from typing import Final, TypeAlias

import attrs

from relayd.aggregate import precedence
from relayd.outbox import Entry, SharedFrames
from wire.messages import dumps
from wire.protocol import MAIN_SESSION, RelayType, Status, written_session

ClientKey: TypeAlias = Hashable

MODE_REPLAY: Final = "replay"
MODE_SNAPSHOT: Final = "snapshot"
#: ``mode`` of the ``subscribed`` answering a ``statusOnly`` subscribe.
MODE_STATUS: Final = "status"
#: The relay's own frames one cursor may hold (``subscribed``, snapshots,
#: status changes) before it is re-snapshotted instead: a client that does
#: not read while the VM flaps must not grow without bound.
MAX_CURSOR_FRAMES: Final = 32
#: Chunks dropped from the front of the log before the list is compacted.
_COMPACT_AFTER: Final = 64


class Cursor:
    """One subscriber's place in a room's stream.

    ``next`` is the next seq owed (everything before it was sent or covered by
    a snapshot). ``frames`` are the relay's own frames still to send, each
    with the seq it goes before (0: at once). ``awake`` is True while the
    cursor sits in its client's writer's ready set.
    """

    __slots__ = (
        "awake",
        "client",
        "frames",
        "gone",
        "next",
        "request",
        "room",
        "status_only",
        "status_sent",
        "waiting",
    )

    def __init__(self, client: ClientKey, room: Room) -> None:
        self.client = client
        self.room = room
        self.next = 0
        self.waiting = False
        self.request: str | None = None
        self.status_only = False
        self.status_sent = -1
        self.frames: list[tuple[int, str]] | None = None
        self.awake = False
        #: Set once unsubscribed: a writer that still holds it drops it.
        self.gone = False

    def __repr__(self) -> str:
        return f"Cursor({self.client!r}, next={self.next}, waiting={self.waiting})"


@attrs.frozen
class Wake:
    """These cursors have something to send: wake their clients' writers."""

    cursors: tuple[Cursor, ...]


@attrs.frozen
class RequestSnapshot:
    """Ask the VM for a ``messages_snapshot`` with this ``requestId``."""

    request_id: str


@attrs.frozen
class StatusChanged:
    """The workspace's (aggregate) status as the control plane should hear it."""

    status: str


@attrs.frozen
class Anomaly:
    """Something the VM got wrong (a duplicate, a gap, a stale snapshot), for the log."""

    message: str


Action: TypeAlias = Wake | RequestSnapshot | StatusChanged | Anomaly


def _head(kind: str, workspace_id: str, session_id: str | None) -> dict[str, str | None]:
    """A relay frame's first fields: ``sessionId`` only when it is not main."""
    head: dict[str, str | None] = {"type": kind, "workspaceId": workspace_id}
    session = written_session(session_id)
    if session is not None:
        head["sessionId"] = session
    return head


def subscribed_frame(
    workspace_id: str, epoch: str | None, mode: str, session_id: str | None = None
) -> str:
    """The relay's ``subscribed`` answer."""
    body = _head(RelayType.SUBSCRIBED, workspace_id, session_id)
    body["epoch"] = epoch
    body["mode"] = mode
    return dumps(body)


def offline_frame(workspace_id: str, session_id: str | None = None) -> str:
    """The relay's ``status: offline`` (no seq: not part of the log)."""
    return relay_status_frame(workspace_id, Status.OFFLINE, session_id=session_id)


def relay_status_frame(
    workspace_id: str, status: str, detail: str | None = None, session_id: str | None = None
) -> str:
    """A ``status`` in the relay's own word (no seq): ``offline``, or what a returning VM said."""
    body = _head(RelayType.STATUS, workspace_id, session_id)
    body["status"] = status
    if detail is not None:
        body["detail"] = detail
    return dumps(body)


_request_counter = itertools.count(1)


class Workspace:
    """The session rooms of one workspace, and what its ``statusOnly`` subscribers see.

    They see one status for the whole workspace (docs/protocol.md, "Sessions"):
    ``offline`` while the VM is away, else the status frame of the most
    urgent session (:func:`relayd.aggregate.precedence`), as it came. Rooms
    tell it when their status or the VM's presence changed
    (:meth:`changed`); it wakes its readers when the chosen frame changes
    and reports the workspace's status when its word changes.
    """

    def __init__(self, workspace_id: str) -> None:
        self.workspace_id = workspace_id
        #: The rooms, by session id, and main's (the hot path's usual one) at hand.
        self.rooms: dict[str, Room] = {}
        self.main: Room | None = None
        #: The ``statusOnly`` cursors (they live in main's room).
        self.readers: dict[Cursor, None] = {}
        #: Bumped whenever the frame readers should see changes.
        self.version = 0
        self._shown: str | None = offline_frame(workspace_id)
        #: The word last reported to the control plane. Until a room hears from
        #: the VM the workspace counts as offline, which needs no report.
        self.status: str | None = Status.OFFLINE
        self._changes = itertools.count(1)

    def next_change(self) -> int:
        """A rising count: when a room's status changed, for the ties."""
        return next(self._changes)

    def chosen(self) -> tuple[str | None, str | None]:
        """The frame ``statusOnly`` readers get now and its status word (None: none yet)."""
        rooms = self.rooms.values()
        # The rooms of a workspace share its VM: while any of them is not told
        # it is back (in the middle of a hello, too), the workspace is offline.
        if not all(room.vm_online for room in rooms):
            return offline_frame(self.workspace_id), Status.OFFLINE
        best: Room | None = None
        best_key: tuple[int, bool, int] | None = None
        for room in rooms:
            if room.status is None or room.status_frame is None:
                continue
            key = precedence(room.status, room.session_id, room.status_changed)
            if best_key is None or key < best_key:
                best, best_key = room, key
        if best is None:
            return None, None
        return best.status_frame, best.status

    def changed(self, woken: list[Cursor]) -> list[Action]:
        """A room's status or the VM's presence changed: wake the readers if
        what they see changed, and report a new word."""
        frame, word = self.chosen()
        actions: list[Action] = []
        if frame != self._shown:
            self._shown = frame
            self.version += 1
            for cursor in self.readers:
                cursor.room._wake(cursor, woken)
        if word != self.status:
            self.status = word
            if word is not None:
                actions.append(StatusChanged(word))
        return actions


class Room:
    """The log and the subscribers' cursors of one session of a workspace."""

    def __init__(
        self,
        workspace_id: str,
        session_id: str = MAIN_SESSION,
        *,
        buffer_messages: int,
        buffer_bytes: int,
        request_prefix: str = "",
        workspace: Workspace | None = None,
    ) -> None:
        self.workspace_id = workspace_id
        self.session_id = session_id
        #: The workspace's other rooms and its ``statusOnly`` readers.
        self.workspace = workspace if workspace is not None else Workspace(workspace_id)
        if session_id in self.workspace.rooms:
            raise ValueError(f"session {session_id!r} already has a room")
        self.workspace.rooms[session_id] = self
        if session_id == MAIN_SESSION:
            self.workspace.main = self
        self.buffer_messages = max(buffer_messages, 1)
        self.buffer_bytes = max(buffer_bytes, 1)
        self._request_prefix = request_prefix or f"r{next(_request_counter)}-"
        self._requests = itertools.count(1)
        self.vm_online = False
        #: The log incarnation the log belongs to; None until the VM names one.
        self.epoch: str | None = None
        #: The log covers seqs (base, head].
        self.base = 0
        self.head = 0
        #: The log: chunks of consecutive frames and the seq of each one's
        #: first frame; those before ``_start`` are gone (dropped in bulk).
        self._chunks: list[SharedFrames] = []
        self._firsts: list[int] = []
        self._start = 0
        self._count = 0
        self._chars = 0
        #: The last ``status`` frame the VM sent (as text), its status word,
        #: and when it changed (:meth:`Workspace.next_change`).
        self.status_frame: str | None = None
        self.status: str | None = None
        self.status_changed = 0
        self._cursors: dict[ClientKey, Cursor] = {}
        #: Live cursors that have read everything: woken by the next frames.
        self._idle: dict[Cursor, None] = {}
        self.pending_request: str | None = None

    # -- queries -----------------------------------------------------------

    def __contains__(self, client: ClientKey) -> bool:
        return client in self._cursors

    @property
    def clients(self) -> list[ClientKey]:
        """Every subscribed client."""
        return list(self._cursors)

    def cursor(self, client: ClientKey) -> Cursor | None:
        """A subscribed client's cursor."""
        return self._cursors.get(client)

    @property
    def buffered(self) -> int:
        """How many frames the log holds."""
        return self._count

    @property
    def buffered_chars(self) -> int:
        """How many characters the log holds."""
        return self._chars

    def log_frames(self) -> list[str]:
        """Every frame in the log, oldest first (for tests and checks)."""
        return [f for chunk in self._chunks[self._start :] for f in chunk.frames]

    # -- clients -----------------------------------------------------------

    def subscribe(
        self,
        client: ClientKey,
        *,
        last_seq: int | None = None,
        epoch: str | None = None,
        status_only: bool = False,
    ) -> list[Action]:
        """A client subscribes (again: a repeat replaces its subscription).

        A ``status_only`` cursor follows the whole workspace's status (the
        router puts it in main's room).
        """
        self._forget(client)
        ws, sid = self.workspace_id, self.session_id
        cursor = Cursor(client, self)
        self._cursors[client] = cursor
        actions: list[Action] = []
        if status_only:
            cursor.status_only = True
            self.workspace.readers[cursor] = None
            self._push(cursor, subscribed_frame(ws, self.epoch, MODE_STATUS, sid), 0)
        elif (
            last_seq is not None
            and epoch is not None
            and self.epoch == epoch
            and self.base <= last_seq <= self.head
        ):
            cursor.next = last_seq + 1
            self._push(cursor, subscribed_frame(ws, self.epoch, MODE_REPLAY, sid), cursor.next)
            if not self.vm_online:
                self._push(cursor, offline_frame(ws, sid), self.head + 1)
        else:
            cursor.waiting = True
            self._push(cursor, subscribed_frame(ws, self.epoch, MODE_SNAPSHOT, sid), 0)
            if self.vm_online:
                actions.extend(self._wait_for_snapshot([cursor]))
            else:
                self._push(cursor, offline_frame(ws, sid), 0)
        cursor.awake = True
        actions.append(Wake((cursor,)))
        return actions

    def unsubscribe(self, client: ClientKey) -> list[Action]:
        """A client leaves (unsubscribe, disconnect, or cut off)."""
        self._forget(client)
        return []

    def _forget(self, client: ClientKey) -> None:
        cursor = self._cursors.pop(client, None)
        if cursor is not None:
            cursor.gone = True
            cursor.frames = None
            self._idle.pop(cursor, None)
            self.workspace.readers.pop(cursor, None)

    # -- a client's writer ---------------------------------------------------

    def read(self, cursor: Cursor, max_chars: int) -> tuple[list[Entry], int, list[Action]]:
        """What ``cursor`` is owed next, up to about ``max_chars`` characters.

        Returns the entries (the log's shared chunks where a read covers one
        whole, else single frames), their characters, and actions (a
        ``snapshot_request`` when the cursor fell out of the log). When the
        cursor has nothing more to send for now, ``cursor.awake`` is False on
        return: the room wakes it when that changes.
        """
        if cursor.frames is None and not (cursor.waiting or cursor.status_only or cursor.gone):
            firsts = self._firsts
            if firsts and firsts[-1] == cursor.next:
                # The common case: a live reader owed just the newest chunk.
                chunk = self._chunks[-1]
                cursor.next = self.head + 1
                cursor.awake = False
                self._idle[cursor] = None
                return [chunk], chunk.chars, []
        out: list[Entry] = []
        size = 0
        actions: list[Action] = []
        if cursor.gone:
            cursor.awake = False
            return out, size, actions
        while size < max_chars:
            own = cursor.frames
            if own and (cursor.waiting or cursor.status_only or own[0][0] <= cursor.next):
                frame = own.pop(0)[1]
                if not own:
                    cursor.frames = None
                out.append(frame)
                size += len(frame)
                continue
            if cursor.status_only:
                workspace = self.workspace
                if cursor.status_sent != workspace.version:
                    cursor.status_sent = workspace.version
                    current = workspace.chosen()[0]
                    if current is not None:
                        out.append(current)
                        size += len(current)
                break
            if cursor.waiting or cursor.next > self.head:
                break
            if cursor.next <= self.base:
                # Fallen out of the log: not an error, a fresh snapshot.
                actions.extend(self._resnapshot(cursor))
                continue
            last = self.head if not own else min(self.head, own[0][0] - 1)
            size += self._slice(cursor, last, max_chars - size, out)
        if not self._has_more(cursor):
            cursor.awake = False
            if not cursor.waiting and not cursor.status_only:
                self._idle[cursor] = None
        return out, size, actions

    def _has_more(self, cursor: Cursor) -> bool:
        own = cursor.frames
        if own and (cursor.waiting or cursor.status_only or own[0][0] <= cursor.next):
            return True
        if cursor.status_only:
            return cursor.status_sent != self.workspace.version
        return not cursor.waiting and cursor.next <= self.head

    def _slice(self, cursor: Cursor, last: int, max_chars: int, out: list[Entry]) -> int:
        """Log frames ``cursor.next .. last`` (at least one) into ``out``; their characters."""
        firsts, chunks = self._firsts, self._chunks
        i = bisect.bisect_right(firsts, cursor.next, lo=self._start) - 1
        size = 0
        while cursor.next <= last and (size < max_chars or not size):
            chunk, first = chunks[i], firsts[i]
            end = first + len(chunk.frames) - 1  # the chunk's last seq
            if cursor.next == first and end <= last:
                out.append(chunk)
                size += chunk.chars
                cursor.next = end + 1
                i += 1
                continue
            # Part of a chunk (a resume, a snapshot, or a place the relay's own
            # frame must go): single frames, encoded through the frame cache.
            stop = min(end, last)
            for frame in chunk.frames[cursor.next - first : stop - first + 1]:
                out.append(frame)
                size += len(frame)
                cursor.next += 1
                if size >= max_chars:
                    return size
            i += 1
        return size

    # -- the VM ------------------------------------------------------------

    def vm_connected(
        self, log: tuple[str, int] | None, status: tuple[str, str | None] | None = None
    ) -> list[Action]:
        """The owning VM said ``hello``; ``log`` is its ``(epoch, seq)`` for this session.

        ``status`` is the ``(status, detail)`` the VM's ``hello`` reported for it,
        when it did: every subscriber, told ``offline`` while the VM was away,
        hears it at once even when the VM's log has not moved (nothing else
        would tell them the VM is back).
        """
        was_online = self.vm_online
        self.vm_online = True
        actions: list[Action] = []
        woken: list[Cursor] = []
        if status is not None:
            word, detail = status
            frame = relay_status_frame(self.workspace_id, word, detail, self.session_id)
            if frame != self.status_frame:
                self.status_frame = frame
                self.status = word
                self.status_changed = self.workspace.next_change()
            if not was_online:
                for cursor in self._cursors.values():
                    if not cursor.status_only:
                        self._push(cursor, frame, self._place(cursor), woken)
        # No longer "offline" (with nothing known yet, without a status).
        actions.extend(self.workspace.changed(woken))
        if log is not None:
            epoch, seq = log
            if self.epoch is None and not self._count:
                self.epoch, self.base, self.head = epoch, seq, seq
            elif self.epoch != epoch or seq != self.head:
                # The VM's log moved on without us (or was lost): what the
                # log holds can no longer be resumed from.
                self._reset(epoch, seq, woken)
        # Also asks for the snapshot that clients waiting while the VM was away need.
        actions.extend(self._ask_for_waiting())
        if woken:
            actions.append(Wake(tuple(woken)))
        return actions

    def vm_disconnected(self) -> list[Action]:
        """The owning VM went away: subscribers hear ``offline`` and keep waiting."""
        self.vm_online = False
        self.pending_request = None
        self.status_frame = None
        self.status = None
        woken: list[Cursor] = []
        actions = self.workspace.changed(woken)
        frame = offline_frame(self.workspace_id, self.session_id)
        for cursor in list(self._cursors.values()):
            cursor.request = None
            if not cursor.status_only:
                self._push(cursor, frame, self._place(cursor), woken)
        if woken:
            actions.append(Wake(tuple(woken)))
        return actions

    def next_frames(
        self, seq: int, epoch: str, frames: list[str], kind: str
    ) -> list[Cursor] | None:
        """The common case of :meth:`vm_frame`, for consecutive frames of one type at once.

        ``frames`` have the seqs ``seq``, ``seq + 1``, ...; the first follows
        the head in the current epoch and none is a ``status``: they are
        appended to the log as one chunk and the cursors to wake returned.
        Otherwise nothing happens and None is returned: give each frame to
        :meth:`vm_frame`.
        """
        if epoch != self.epoch or seq != self.head + 1:
            return None
        chars = sum(map(len, frames))
        self._append(frames, chars, {kind: [len(frames), chars]})
        return self._wake_idle()

    def vm_frame(
        self, seq: int, epoch: str, frame: str, *, status: str | None = None
    ) -> list[Action]:
        """A sequenced frame from the VM; ``status`` is set for ``status`` frames."""
        actions: list[Action] = []
        woken: list[Cursor] = []
        if epoch != self.epoch:
            if self.epoch is None and not self._count:
                self.epoch, self.base, self.head = epoch, seq - 1, seq - 1
            else:
                actions.append(Anomaly(f"epoch changed from {self.epoch} to {epoch} at seq {seq}"))
                self._reset(epoch, seq - 1, woken)
                actions.extend(self._ask_for_waiting())
        elif seq <= self.head:
            return [Anomaly(f"duplicate seq {seq} (head is {self.head}); dropped")]
        elif seq > self.head + 1:
            actions.append(Anomaly(f"gap: seq {seq} after {self.head}"))
            self._reset(epoch, seq - 1, woken)
            actions.extend(self._ask_for_waiting())
        self._append([frame], len(frame), None)
        woken.extend(self._wake_idle())
        if status is not None:
            self.status_frame = frame
            self.status = status
            self.status_changed = self.workspace.next_change()
            actions.extend(self.workspace.changed(woken))
        if woken:
            actions.append(Wake(tuple(woken)))
        return actions

    def vm_snapshot(self, request_id: str | None, seq: int, epoch: str, frame: str) -> list[Action]:
        """A ``messages_snapshot`` arrived: hand it to the cursors waiting for it."""
        if request_id is None or request_id != self.pending_request:
            return [Anomaly(f"snapshot {request_id} was not asked for; dropped")]
        self.pending_request = None
        actions: list[Action] = []
        woken: list[Cursor] = []
        if epoch != self.epoch:
            # The VM's log changed incarnation without a frame saying so; the
            # snapshot is its word now, and live clients of the old epoch need it too.
            actions.append(Anomaly(f"snapshot epoch {epoch} replaces {self.epoch}"))
            self._reset(epoch, seq, woken)
            waiting = [c for c in self._cursors.values() if c.waiting]
        else:
            waiting = [c for c in self._cursors.values() if c.waiting and c.request == request_id]
        if seq < self.base:
            # The log no longer reaches back to this snapshot: ask for a newer one.
            actions.append(Anomaly(f"snapshot at {seq} is older than the log ({self.base})"))
            actions.extend(self._wait_for_snapshot(waiting))
        else:
            for cursor in waiting:
                cursor.waiting = False
                cursor.request = None
                cursor.next = seq + 1
                self._push(cursor, frame, 0, woken)
        if woken:
            actions.append(Wake(tuple(woken)))
        return actions

    # -- internals ---------------------------------------------------------

    def _place(self, cursor: Cursor) -> int:
        """Where a relay frame sent now goes in a cursor's stream: after the log's head."""
        return 0 if cursor.waiting else self.head + 1

    def _push(
        self, cursor: Cursor, frame: str, before: int, woken: list[Cursor] | None = None
    ) -> None:
        """Give a cursor one of the relay's own frames, to send before seq ``before``."""
        own = cursor.frames
        if own is None:
            own = cursor.frames = []
        elif len(own) >= MAX_CURSOR_FRAMES:
            # It is not reading; what it missed is summed up by a snapshot.
            if cursor.waiting:
                own[:] = [(0, self._subscribed(MODE_SNAPSHOT))]
            else:
                # Out of the log on purpose: its next read re-snapshots it.
                own.clear()
                cursor.next = -1
                self._wake(cursor, woken)
                return
        own.append((before, frame))
        self._wake(cursor, woken)

    def _wake(self, cursor: Cursor, woken: list[Cursor] | None) -> None:
        if not cursor.awake:
            cursor.awake = True
            self._idle.pop(cursor, None)
            if woken is not None:
                woken.append(cursor)

    def _subscribed(self, mode: str) -> str:
        return subscribed_frame(self.workspace_id, self.epoch, mode, self.session_id)

    def _wake_idle(self) -> list[Cursor]:
        idle = self._idle
        if not idle:
            return []
        self._idle = {}
        woken = list(idle)
        for cursor in woken:
            cursor.awake = True
        return woken

    def _append(self, frames: list[str], chars: int, counts: dict[str, list[int]] | None) -> None:
        first = self.head + 1
        self._chunks.append(SharedFrames(frames, chars, counts))
        self._firsts.append(first)
        self._count += len(frames)
        self._chars += chars
        self.head = first + len(frames) - 1
        self._trim()

    def _trim(self) -> None:
        """Drop the oldest frames beyond either bound; the newest one always stays."""
        chunks, firsts = self._chunks, self._firsts
        while self._count > 1 and (
            self._count > self.buffer_messages or self._chars > self.buffer_bytes
        ):
            chunk = chunks[self._start]
            frames = chunk.frames
            drop, dropped_chars = 0, 0
            count, chars = self._count, self._chars
            while (
                drop < len(frames)
                and count > 1
                and (count > self.buffer_messages or chars > self.buffer_bytes)
            ):
                size = len(frames[drop])
                drop += 1
                count -= 1
                chars -= size
                dropped_chars += size
            self._count, self._chars = count, chars
            if drop == len(frames):
                chunks[self._start] = _EMPTY
                self._start += 1
            else:
                rest = frames[drop:]
                chunks[self._start] = SharedFrames(rest, chunk.chars - dropped_chars)
                firsts[self._start] += drop
            self.base = firsts[self._start] - 1 if self._start < len(chunks) else self.head
        if self._start > _COMPACT_AFTER and self._start * 2 > len(chunks):
            del chunks[: self._start]
            del firsts[: self._start]
            self._start = 0

    def _reset(self, epoch: str, seq: int, woken: list[Cursor]) -> None:
        """Start the log afresh at ``(epoch, seq)``: every live cursor re-snapshots."""
        self.epoch, self.base, self.head = epoch, seq, seq
        self._chunks.clear()
        self._firsts.clear()
        self._start = self._count = self._chars = 0
        # Snapshots asked for before the reset describe the old log.
        self.pending_request = None
        for cursor in list(self._cursors.values()):
            if cursor.status_only:
                continue
            if cursor.waiting:
                cursor.request = None
            else:
                self._resnapshot(cursor, ask=False)
                woken.append(cursor)

    def _resnapshot(self, cursor: Cursor, *, ask: bool = True) -> list[Action]:
        """The cursor's stream restarts: a fresh ``subscribed`` (mode snapshot), then a snapshot."""
        cursor.frames = [(0, self._subscribed(MODE_SNAPSHOT))]
        if not self.vm_online:
            cursor.frames.append((0, offline_frame(self.workspace_id, self.session_id)))
        cursor.waiting = True
        cursor.request = None
        self._idle.pop(cursor, None)
        cursor.awake = True
        if ask and self.vm_online:
            return self._wait_for_snapshot([cursor])
        return []

    def _ask_for_waiting(self) -> list[Action]:
        if not self.vm_online:
            return []
        idle = [c for c in self._cursors.values() if c.waiting and c.request is None]
        return self._wait_for_snapshot(idle) if idle else []

    def _wait_for_snapshot(self, cursors: Iterable[Cursor]) -> list[Action]:
        actions: list[Action] = []
        if self.pending_request is None:
            self.pending_request = f"{self._request_prefix}{next(self._requests)}"
            actions.append(RequestSnapshot(self.pending_request))
        for cursor in cursors:
            cursor.request = self.pending_request
        return actions


_EMPTY: Final = SharedFrames([], 0)

"""One workspace's room as a pure state machine: who gets which frame, in order.

The room does no I/O. Its inputs are what happened (a client subscribed, the
VM sent a frame, a snapshot arrived, the VM went away or came back); its output
is a list of actions for the I/O shell: :class:`Deliver` frames to clients,
:class:`RequestSnapshot` from the VM, report a :class:`StatusChanged`.

The guarantee it keeps (docs/protocol.md section 4): each subscribed client gets the
sequenced messages of its workspace in order, with no gap and no duplicate,
starting right after its snapshot or its ``lastSeq``.

How: the room keeps the VM's recent frames in a bounded replay buffer covering
seqs ``(base, head]`` of the current ``epoch``. A client resuming inside that
window is replayed from it. Any other client waits for a snapshot; live frames
that arrive meanwhile are *not* queued per client, because the replay buffer
already holds them in order: when the snapshot at seq ``S`` arrives, the
waiting clients get it and then the buffer's frames after ``S``. Clients that
subscribe while a snapshot is on its way join the same request — a snapshot
plus the frames after it brings any newcomer up to date, whenever it joined.
If the buffer no longer reaches back to ``S``, the room asks again.

Each client is in one of three states: *live* (it has everything up to
``head``, or up to a ``next - 1`` beyond ``head`` when a snapshot ran ahead of
the frames), *waiting* for a snapshot (request id, or none while the VM is
away), or *status only*.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Hashable
from typing import Any, Final, TypeAlias

import attrs

from wire.messages import dumps
from wire.protocol import RelayType, Status

ClientKey: TypeAlias = Hashable

MODE_REPLAY: Final = "replay"
MODE_SNAPSHOT: Final = "snapshot"
#: ``mode`` of the ``subscribed`` answering a ``statusOnly`` subscribe.
MODE_STATUS: Final = "status"


@attrs.frozen
class Deliver:
    """Send these frames, in this order, to each of these clients."""

    clients: tuple[ClientKey, ...]
    frames: tuple[str, ...]


@attrs.frozen
class RequestSnapshot:
    """Ask the VM for a ``messages_snapshot`` with this ``requestId``."""

    request_id: str


@attrs.frozen
class StatusChanged:
    """The workspace's status as the control plane should hear it."""

    status: str


@attrs.frozen
class Anomaly:
    """Something the VM got wrong (a duplicate, a gap, a stale snapshot), for the log."""

    message: str


Action: TypeAlias = Deliver | RequestSnapshot | StatusChanged | Anomaly


def subscribed_frame(workspace_id: str, epoch: str | None, mode: str) -> str:
    """The relay's ``subscribed`` answer."""
    return dumps(
        {"type": RelayType.SUBSCRIBED, "workspaceId": workspace_id, "epoch": epoch, "mode": mode}
    )


def offline_frame(workspace_id: str) -> str:
    """The relay's ``status: offline`` (no seq: not part of the log)."""
    return relay_status_frame(workspace_id, Status.OFFLINE)


def relay_status_frame(workspace_id: str, status: str, detail: str | None = None) -> str:
    """A ``status`` in the relay's own word (no seq): ``offline``, or what a returning VM said."""
    body = {"type": RelayType.STATUS, "workspaceId": workspace_id, "status": status}
    if detail is not None:
        body["detail"] = detail
    return dumps(body)


_request_counter = itertools.count(1)


class Room:
    """The subscribers and replay buffer of one workspace."""

    def __init__(
        self,
        workspace_id: str,
        *,
        buffer_messages: int,
        buffer_bytes: int,
        request_prefix: str = "",
    ) -> None:
        self.workspace_id = workspace_id
        self.buffer_messages = max(buffer_messages, 0)
        self.buffer_bytes = max(buffer_bytes, 0)
        self._request_prefix = request_prefix or f"r{next(_request_counter)}-"
        self._requests = itertools.count(1)
        self.vm_online = False
        #: The log incarnation the buffer belongs to; None until the VM names one.
        self.epoch: str | None = None
        #: The buffer covers seqs (base, head].
        self.base = 0
        self.head = 0
        self._buffer: collections.deque[tuple[int, str]] = collections.deque()
        self._buffer_size = 0
        #: The last ``status`` frame the VM sent (as text) and its status word.
        self._status_frame: str | None = None
        self.status: str | None = None
        #: Live clients that have everything up to ``head``.
        self._live: dict[ClientKey, None] = {}
        #: Live clients whose snapshot ran ahead of the frames: client -> next seq.
        self._ahead: dict[ClientKey, int] = {}
        #: Clients waiting for a snapshot: client -> request id (None: VM away).
        self._waiting: dict[ClientKey, str | None] = {}
        self._status_only: dict[ClientKey, None] = {}
        self.pending_request: str | None = None

    # -- queries -----------------------------------------------------------

    def __contains__(self, client: ClientKey) -> bool:
        return (
            client in self._live
            or client in self._ahead
            or client in self._waiting
            or client in self._status_only
        )

    @property
    def clients(self) -> list[ClientKey]:
        """Every subscribed client."""
        return [*self._live, *self._ahead, *self._waiting, *self._status_only]

    @property
    def buffered(self) -> int:
        """How many frames the replay buffer holds."""
        return len(self._buffer)

    def is_idle(self) -> bool:
        """True when no client is subscribed."""
        return not (self._live or self._ahead or self._waiting or self._status_only)

    # -- clients -----------------------------------------------------------

    def subscribe(
        self,
        client: ClientKey,
        *,
        last_seq: int | None = None,
        epoch: str | None = None,
        status_only: bool = False,
    ) -> list[Action]:
        """A client subscribes (again: a repeat replaces its subscription)."""
        self._forget(client)
        ws = self.workspace_id
        if status_only:
            self._status_only[client] = None
            frames = [subscribed_frame(ws, self.epoch, MODE_STATUS)]
            current = self._current_status_frame()
            if current is not None:
                frames.append(current)
            return [Deliver((client,), tuple(frames))]
        if (
            last_seq is not None
            and epoch is not None
            and self.epoch == epoch
            and self.base <= last_seq <= self.head
        ):
            frames = [subscribed_frame(ws, self.epoch, MODE_REPLAY)]
            frames.extend(self._frames_after(last_seq))
            if not self.vm_online:
                frames.append(offline_frame(ws))
            self._live[client] = None
            return [Deliver((client,), tuple(frames))]
        actions: list[Action] = [
            Deliver((client,), (subscribed_frame(ws, self.epoch, MODE_SNAPSHOT),))
        ]
        if self.vm_online:
            actions.extend(self._wait_for_snapshot([client]))
        else:
            self._waiting[client] = None
            actions.append(Deliver((client,), (offline_frame(ws),)))
        return actions

    def unsubscribe(self, client: ClientKey) -> list[Action]:
        """A client leaves (unsubscribe, disconnect, or cut off)."""
        self._forget(client)
        return []

    def _forget(self, client: ClientKey) -> None:
        self._live.pop(client, None)
        self._ahead.pop(client, None)
        self._waiting.pop(client, None)
        self._status_only.pop(client, None)

    # -- the VM ------------------------------------------------------------

    def vm_connected(
        self, log: tuple[str, int] | None, status: tuple[str, str | None] | None = None
    ) -> list[Action]:
        """The owning VM said ``hello``; ``log`` is its ``(epoch, seq)`` for this workspace.

        ``status`` is the ``(status, detail)`` the VM's ``hello`` reported for it,
        when it did: every subscriber, told ``offline`` while the VM was away,
        hears it at once even when the VM's log has not moved (nothing else
        would tell them the VM is back).
        """
        was_online = self.vm_online
        self.vm_online = True
        actions: list[Action] = []
        if status is not None:
            word, detail = status
            self._status_frame = relay_status_frame(self.workspace_id, word, detail)
            if word != self.status:
                self.status = word
                actions.append(StatusChanged(word))
            clients = tuple(self.clients)
            if clients and not was_online:
                actions.append(Deliver(clients, (self._status_frame,)))
        resync: list[ClientKey] = []
        if log is not None:
            epoch, seq = log
            if self.epoch is None and not self._buffer:
                self.epoch, self.base, self.head = epoch, seq, seq
            elif self.epoch != epoch or seq != self.head:
                # The VM's log moved on without us (or was lost): what the
                # buffer holds can no longer be resumed from.
                resync = self._reset(epoch, seq)
        # Also asks for the snapshot that clients waiting while the VM was away need.
        actions.extend(self._resync(resync))
        return actions

    def vm_disconnected(self) -> list[Action]:
        """The owning VM went away: subscribers hear ``offline`` and keep waiting."""
        self.vm_online = False
        self.pending_request = None
        for client in self._waiting:
            self._waiting[client] = None
        self._status_frame = None
        self.status = None
        clients = tuple(self.clients)
        actions: list[Action] = [StatusChanged(Status.OFFLINE)]
        if clients:
            actions.append(Deliver(clients, (offline_frame(self.workspace_id),)))
        return actions

    def next_frames(self, seq: int, epoch: str, frames: list[str]) -> tuple[ClientKey, ...] | None:
        """The common case of :meth:`vm_frame`, for consecutive frames at once.

        ``frames`` have the seqs ``seq``, ``seq + 1``, ...; the first follows
        the head in the current epoch, no client is waiting for the room to
        catch up, and none is a ``status``: they are buffered and the live
        clients returned (their recipients). Otherwise nothing happens and
        None is returned: give each frame to :meth:`vm_frame`.
        """
        if epoch != self.epoch or seq != self.head + 1 or self._ahead:
            return None
        self._buffer.extend(zip(range(seq, seq + len(frames)), frames, strict=True))
        self._buffer_size += sum(map(len, frames))
        self.head = seq + len(frames) - 1
        self._trim()
        return tuple(self._live)

    def vm_frame(
        self, seq: int, epoch: str, frame: str, *, status: str | None = None
    ) -> list[Action]:
        """A sequenced frame from the VM; ``status`` is set for ``status`` frames."""
        actions: list[Action] = []
        if epoch != self.epoch:
            if self.epoch is None and not self._buffer:
                self.epoch, self.base, self.head = epoch, seq - 1, seq - 1
            else:
                actions.append(Anomaly(f"epoch changed from {self.epoch} to {epoch} at seq {seq}"))
                actions.extend(self._resync(self._reset(epoch, seq - 1)))
        elif seq <= self.head:
            return [Anomaly(f"duplicate seq {seq} (head is {self.head}); dropped")]
        elif seq > self.head + 1:
            actions.append(Anomaly(f"gap: seq {seq} after {self.head}"))
            actions.extend(self._resync(self._reset(epoch, seq - 1)))
        self._append(seq, frame)
        recipients: list[ClientKey] = list(self._live)
        if self._ahead:
            for client, nxt in list(self._ahead.items()):
                if nxt == seq:
                    del self._ahead[client]
                    self._live[client] = None
                    recipients.append(client)
        if status is not None:
            self._status_frame = frame
            if status != self.status:
                self.status = status
                actions.append(StatusChanged(status))
            recipients.extend(self._status_only)
        if recipients:
            actions.append(Deliver(tuple(recipients), (frame,)))
        return actions

    def vm_snapshot(self, request_id: str | None, seq: int, epoch: str, frame: str) -> list[Action]:
        """A ``messages_snapshot`` arrived: hand it to the clients waiting for it."""
        if request_id is None or request_id != self.pending_request:
            return [Anomaly(f"snapshot {request_id} was not asked for; dropped")]
        self.pending_request = None
        waiting = [c for c, r in self._waiting.items() if r == request_id]
        actions: list[Action] = []
        if epoch != self.epoch:
            # The VM's log changed incarnation without a frame saying so; the
            # snapshot is its word now, and live clients of the old epoch need it too.
            actions.append(Anomaly(f"snapshot epoch {epoch} replaces {self.epoch}"))
            stale = self._reset(epoch, seq)
            if stale:
                actions.append(
                    Deliver(
                        tuple(stale), (subscribed_frame(self.workspace_id, epoch, MODE_SNAPSHOT),)
                    )
                )
            waiting.extend(stale)
        if seq < self.base:
            # The buffer no longer reaches back to this snapshot: ask for a newer one.
            actions.append(Anomaly(f"snapshot at {seq} is older than the buffer ({self.base})"))
            return [*actions, *self._wait_for_snapshot(waiting)]
        if not waiting:
            return actions
        for client in waiting:
            self._waiting.pop(client, None)
        frames = [frame]
        if seq >= self.head:
            for client in waiting:
                if seq == self.head:
                    self._live[client] = None
                else:
                    self._ahead[client] = seq + 1
        else:
            frames.extend(self._frames_after(seq))
            for client in waiting:
                self._live[client] = None
        actions.append(Deliver(tuple(waiting), tuple(frames)))
        return actions

    # -- internals ---------------------------------------------------------

    def _current_status_frame(self) -> str | None:
        if not self.vm_online:
            return offline_frame(self.workspace_id)
        return self._status_frame

    def _append(self, seq: int, frame: str) -> None:
        self._buffer.append((seq, frame))
        self._buffer_size += len(frame)
        self.head = seq
        self._trim()

    def _trim(self) -> None:
        while self._buffer and (
            len(self._buffer) > self.buffer_messages or self._buffer_size > self.buffer_bytes
        ):
            old_seq, old = self._buffer.popleft()
            self._buffer_size -= len(old)
            self.base = old_seq

    def _frames_after(self, seq: int) -> list[str]:
        # The buffer is contiguous: seq s sits at index s - base - 1.
        start = seq - self.base
        if start <= 0:
            return [f for _s, f in self._buffer]
        return [f for _s, f in itertools.islice(self._buffer, start, None)]

    def _reset(self, epoch: str, seq: int) -> list[ClientKey]:
        """Start the buffer afresh at ``(epoch, seq)``; return the clients that must resync."""
        self.epoch, self.base, self.head = epoch, seq, seq
        self._buffer.clear()
        self._buffer_size = 0
        stale = [*self._live, *self._ahead]
        self._live.clear()
        self._ahead.clear()
        # Snapshots asked for before the reset describe the old log.
        for client in self._waiting:
            self._waiting[client] = None
        self.pending_request = None
        return stale

    def _resync(self, clients: list[ClientKey]) -> list[Action]:
        """Clients whose stream broke hear that a snapshot follows; ask for one if we can."""
        actions: list[Action] = []
        for client in clients:
            self._waiting[client] = None
        if clients:
            frame = subscribed_frame(self.workspace_id, self.epoch, MODE_SNAPSHOT)
            actions.append(Deliver(tuple(clients), (frame,)))
        if self.vm_online:
            idle = [c for c, r in self._waiting.items() if r is None]
            if idle:
                actions.extend(self._wait_for_snapshot(idle))
        return actions

    def _wait_for_snapshot(self, clients: list[ClientKey]) -> list[Action]:
        actions: list[Action] = []
        if self.pending_request is None:
            self.pending_request = f"{self._request_prefix}{next(self._requests)}"
            actions.append(RequestSnapshot(self.pending_request))
        for client in clients:
            self._waiting[client] = self.pending_request
        return actions


def describe(room: Room) -> dict[str, Any]:
    """A small summary for ``stats`` and logs."""
    return {
        "workspaceId": room.workspace_id,
        "epoch": room.epoch,
        "head": room.head,
        "buffered": room.buffered,
        "clients": len(room.clients),
        "vmOnline": room.vm_online,
    }

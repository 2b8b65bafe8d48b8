"""relayd's trio shell: reads peers, asks the router, carries out its actions.

The rules (ownership, who may send what where, hello checks, audit,
counters) are :class:`relayd.router.Router`'s, without sockets. This shell
keeps what touches peers: it feeds each frame to the router and performs the
actions it returns (queue a frame, close a peer, forward to a VM, waiting
while its queue is full, write to the control plane), and it keeps the
delivery mechanics: it wakes the writers of clients whose cursors have
something to send (never waiting on a client: each writer reads the room's
log at its own pace, through :meth:`Relay.read_log`), and the hot path
hands runs of VM frames to their room at once. The sockets themselves are
handled in :mod:`relayd.server` and :mod:`relayd.control`.
"""

from __future__ import annotations

import collections
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Final, Unpack, cast

import trio

from relayd.control_events import ControlHub
from relayd.outbox import Entry, OutboxClosed
from relayd.peer import Peer, PeerOptions
from relayd.ratelimit import TokenBucket
from relayd.revocations import RevocationState
from relayd.room import Action, Cursor, Room, Wake
from relayd.router import (
    VM_IN_KEYS,
    ClientLike,
    Close,
    Emit,
    Forward,
    Ownership,
    Renew,
    Router,
    RouterAction,
    Send,
    SendError,
    SessionLogs,
    SessionStatuses,
    VmLike,
)
from relayd.settings import Settings
from relayd.stats import Stats
from relayd.timers import TimerHandle, Timers
from relayd.wsconn import WebSocket
from relayd.wsframes import FrameCache
from wire.envelope import read_head
from wire.messages import Subscribe
from wire.protocol import SEQUENCED_VM_TYPES, ClientType, VmType
from wire.tokens import Claims, TokenVerifier

__all__ = ["VERSION", "ClientPeer", "Ownership", "Relay", "VmPeer"]

log = logging.getLogger("relayd")

VERSION: Final = "1"
#: VM frame types taken by the hot path of :meth:`Relay.vm_frames` (a status
#: frame also updates the room's status, and ``request_resolved`` is audited:
#: they take the router's full path).
_FAST_TYPES: Final = frozenset(
    str(t) for t in SEQUENCED_VM_TYPES if t not in (VmType.STATUS, VmType.REQUEST_RESOLVED)
)
_VM_KEYS: Final = {t: VM_IN_KEYS[t] for t in _FAST_TYPES}


class ClientPeer(Peer):
    """A client connection: its subscriptions and its rate limit."""

    __slots__ = ("bucket", "subscriptions")

    def __init__(
        self, ws: WebSocket, claims: Claims, *, bucket: TokenBucket, **options: Unpack[PeerOptions]
    ) -> None:
        super().__init__(ws, claims, **options)
        self.subscriptions: set[tuple[str, str]] = set()
        self.bucket = bucket


class VmPeer(Peer):
    """A VM connection: what its ``hello`` said, and where its errors go."""

    __slots__ = ("error_routes", "hello_done", "logs", "statuses")

    def __init__(self, ws: WebSocket, claims: Claims, **options: Unpack[PeerOptions]) -> None:
        super().__init__(ws, claims, **options)
        self.logs: SessionLogs = {}
        #: ``(status, detail)`` per workspace and session, as ``hello`` reported them.
        self.statuses: SessionStatuses = {}
        self.hello_done = False
        self.error_routes: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()


class _Run:
    """Consecutive frames of a VM read for the hot path: one room, type and epoch."""

    __slots__ = ("epoch", "frames", "kind", "room", "seq")

    def __init__(self) -> None:
        self.room: Room | None = None
        self.kind = ""
        self.seq = 0
        self.epoch = ""
        self.frames: list[str] = []


class Relay:
    """Everything relayd runs; one per process."""

    def __init__(self, settings: Settings, verifier: TokenVerifier) -> None:
        self.settings = settings
        self.relay_id = uuid.uuid4().hex[:12]
        self.stats = Stats()
        #: One frame's encoding, shared by every peer it is sent to.
        self.frame_cache = FrameCache()
        self._counters: dict[str, Callable[[dict[str, list[int]]], None]] = {}
        #: Every peer's timers (pings, expiry, stalls), fired by one task (:meth:`Timers.run`).
        self.timers = Timers()
        #: The requests' timeouts (``--request-timeout``) as one entry of the heap.
        self._request_timer = TimerHandle(self)
        self.control = ControlHub(settings.audit_buffer, self.stats)
        self.shutting_down = False
        #: Tokens refused although their signature is good (logout, password, vm revoke).
        self.revocations = RevocationState()
        self.router = Router(
            settings, verifier, self.stats, clock=trio.current_time, revocations=self.revocations
        )
        # The router's tables, as the rest of relayd reads them (the shell
        # books only its own peers in them).
        self.ownership = self.router.ownership
        self.workspaces = self.router.workspaces
        self.vms = cast("dict[str, VmPeer]", self.router.vms)
        self.vm_peers = cast("set[VmPeer]", self.router.vm_peers)
        self.clients_by_user = cast("dict[str, set[ClientPeer]]", self.router.clients_by_user)

    @property
    def verifier(self) -> TokenVerifier:
        """The token verifier (replaced on SIGHUP)."""
        return self.router.verifier

    @verifier.setter
    def verifier(self, verifier: TokenVerifier) -> None:
        self.router.verifier = verifier

    @property
    def synced(self) -> bool:
        """True once the control plane's first ``sync`` came."""
        return self.router.synced

    # -- actions -------------------------------------------------------------

    def perform(self, actions: Iterable[RouterAction]) -> None:
        """Carry out the router's actions (all but :class:`Forward`, which waits)."""
        for action in actions:
            if isinstance(action, Wake):
                for cursor in action.cursors:
                    cast(ClientPeer, cursor.client).wake(cursor)
            elif isinstance(action, Send):
                action.peer.send_or_drop(action.frame)
            elif isinstance(action, SendError):
                action.peer.send_error(
                    action.code, action.message, workspace_id=action.workspace_id, ref=action.ref
                )
            elif isinstance(action, Close):
                action.peer.close(action.code, action.reason)
            elif isinstance(action, Renew):
                action.peer.renew(action.claims)
                log.info("token renewed", extra=action.peer.log_extra())
            elif isinstance(action, Emit):
                self.control.emit(action.event)
            else:
                raise AssertionError(f"{action!r} is carried out by _client_frame")

    def apply(self, room: Room, actions: Iterable[Action]) -> None:
        """Carry out a room's actions."""
        self.perform(self.router.room_actions(room, actions))

    # -- peers ---------------------------------------------------------------

    def client_count(self, user_id: str) -> int:
        """Open client connections of one user (one that is closing no longer counts)."""
        return sum(1 for c in self.clients_by_user.get(user_id, ()) if c.ws.open)

    def all_peers(self) -> list[Peer]:
        """Every open peer."""
        peers: list[Peer] = list(self.vm_peers)
        for group in self.clients_by_user.values():
            peers.extend(group)
        return peers

    def close_all(self, code: int, reason: str) -> None:
        """Close every peer (shutdown)."""
        for peer in self.all_peers():
            peer.close(code, reason)

    def disconnect(self, *, user_id: str | None = None, vm_id: str | None = None) -> int:
        """Cut a user's or a VM's connections off (4403); returns how many."""
        closes = self.router.disconnect(user_id=user_id, vm_id=vm_id)
        self.perform(closes)
        return len(closes)

    def moved(self, workspace_ids: list[str]) -> int:
        """Close (4307) the clients of workspaces another node serves now; returns how many."""
        closes = self.router.moved(workspace_ids)
        self.perform(closes)
        return len(closes)

    def renew(self, peer: Peer, token: str) -> None:
        """Handle ``auth``: a new token for the same ``sub`` and scope moves the deadline."""
        self.perform([self.router.renew(peer, token)])

    def counter_out(self, kind: str) -> Callable[[dict[str, list[int]]], None]:
        """A callback that counts a batch sent to a peer of one kind, given by type
        as ``type -> [frames, characters]`` (counted once per batch, not per frame);
        one per kind, shared by its peers."""
        made = self._counters.get(kind)
        if made is not None:
            return made
        stats = self.stats
        count_out = stats.count_out
        keys: dict[str, str] = {}
        to_clients = kind == "client"

        def count(counts: dict[str, list[int]]) -> None:
            for type_, (frames, chars) in counts.items():
                key = keys.get(type_)
                if key is None:
                    key = keys[type_] = f"{kind}:{type_}"
                count_out(key, frames, chars)
                if to_clients:
                    stats.messages_out += frames

        self._counters[kind] = count
        return count

    # -- delivery ------------------------------------------------------------

    def read_log(self, cursor: Cursor, max_chars: int) -> tuple[list[Entry], int]:
        """What a client's writer sends next for one cursor (see :meth:`Room.read`)."""
        room = cursor.room
        live = not cursor.waiting
        entries, chars, actions = room.read(cursor, max_chars)
        if live and cursor.waiting and not cursor.gone:
            self.stats.fell_behind += 1
        if actions:
            self.apply(room, actions)
        return entries, chars

    def peer_stalled(self, peer: Peer) -> None:
        """A peer took no bytes for ``--stall-timeout`` seconds and is being closed (4008)."""
        self.stats.slow_closes += 1
        if isinstance(peer, ClientPeer):
            self.router.forget_client_rooms(peer)

    # -- clients -------------------------------------------------------------

    def client_joined(self, client: ClientLike) -> None:
        """Book a new client connection."""
        self.router.client_joined(client)

    def client_left(self, client: ClientLike) -> None:
        """Forget a closed client connection (its VMs end its terminals)."""
        self.perform(self.router.client_left(client))

    async def read_client(self, peer: Peer) -> None:
        """Read a client's frames until it closes."""
        assert isinstance(peer, ClientPeer)
        while True:
            for frame in await peer.ws.receive():
                if peer.closing:
                    return
                await self._client_frame(peer, frame)

    async def _client_frame(self, peer: ClientLike, frame: str | bytes) -> None:
        """Handle one client frame (waits only while the owning VM's queue is full)."""
        for action in self.router.client_frame(peer, frame):
            if isinstance(action, Forward):
                if action.kind == ClientType.REQUEST:
                    self.timers.earlier(self._request_timer, self.router.next_request_due())
                await self._forward(action)
            else:
                self.perform([action])

    def on_timer(self, now: float) -> float:
        """The heap's callback: end the requests that timed out; the next due time."""
        self.perform(self.router.expire_requests(now))
        return self.router.next_request_due()

    def _subscribe(self, client: ClientLike, message: Subscribe) -> None:
        out: list[RouterAction] = []
        self.router.subscribe(client, message, out)
        self.perform(out)

    async def _forward(self, forward: Forward) -> None:
        vm = cast(VmPeer, forward.vm)
        try:
            # Waits while the VM's queue is full: this client is not read meanwhile.
            await vm.outbox.put(forward.frame)
        except OutboxClosed:
            self.perform(self.router.forward_failed(forward))
            return
        self.perform(self.router.forwarded(forward))

    # -- VMs -----------------------------------------------------------------

    def vm_joined(self, vm: VmLike) -> None:
        """Book a new VM connection; an older one of the same VM is replaced."""
        self.perform(self.router.vm_joined(vm))

    def vm_left(self, vm: VmLike) -> None:
        """Forget a closed VM connection."""
        self.perform(self.router.vm_left(vm))

    async def read_vm(self, peer: Peer) -> None:
        """Read a VM's frames until it closes (the hot path: envelope only)."""
        assert isinstance(peer, VmPeer)
        while True:
            # Every frame a socket read brought is handled in the same go, so
            # each client's writer finds the lot queued (one write for all).
            self.vm_frames(peer, await peer.ws.receive())

    def vm_frames(self, vm: VmLike, frames: list[str | bytes]) -> None:
        """Handle the frames of one socket read of a VM, in order.

        The hot path: consecutive sequenced frames (not ``status``) of one
        workspace this VM owns, of one type and epoch with consecutive seqs,
        are collected into a run and given to their room at once
        (:meth:`_end_run`); anything else ends the run first and goes to the
        router (:meth:`relayd.router.Router.vm_frame`).
        """
        stats = self.stats
        run = _Run()
        try:
            for frame in frames:
                if vm.closing:
                    return
                stats.vm_frames_in += 1
                if type(frame) is str:
                    fast = self._fast_head(vm, frame)
                    if fast is not None:
                        room, kind, seq, epoch = fast
                        if (
                            room is not run.room
                            or kind != run.kind
                            or epoch != run.epoch
                            or seq != run.seq + len(run.frames)
                        ):
                            self._end_run(run)
                            run.room, run.kind, run.seq, run.epoch = room, kind, seq, epoch
                        run.frames.append(frame)
                        continue
                self._end_run(run)
                self.perform(self.router.vm_frame(vm, frame))
        finally:
            self._end_run(run)

    def _fast_head(self, vm: VmLike, frame: str) -> tuple[Room, str, int, str] | None:
        """(room, type, seq, epoch) of a frame for the hot path, or None."""
        head = read_head(frame)
        if head is None or not vm.hello_done:
            return None
        kind, ws, session, seq, epoch, _ = head
        if kind not in _FAST_TYPES or ws is None or seq is None or epoch is None:
            return None
        owner = self.ownership.get(ws)
        workspace = self.workspaces.get(ws)
        if owner is None or owner.vm_id != vm.sub or workspace is None:
            return None
        # read_head does not check a sessionId's form: only one that has a
        # room (made for a checked id) takes this path; the router checks the rest.
        room = workspace.main if session is None else workspace.rooms.get(session)
        if room is None:
            return None
        return room, kind, seq, epoch

    def _end_run(self, run: _Run) -> None:
        """Give a run's frames to its room: at once, or one by one through the
        full path when they are not the common case."""
        frames = run.frames
        room = run.room
        if not frames or room is None:
            return
        kind, seq, epoch = run.kind, run.seq, run.epoch
        run.room, run.frames = None, []
        woken = room.next_frames(seq, epoch, frames, kind)
        if woken is None:
            for i, frame in enumerate(frames):
                self.stats.count_in(_VM_KEYS[kind], len(frame))
                self.apply(room, room.vm_frame(seq + i, epoch, frame))
            return
        self.stats.count_in(_VM_KEYS[kind], sum(map(len, frames)), len(frames))
        for cursor in woken:
            cast(ClientPeer, cursor.client).wake(cursor)

    # -- ownership (control socket) --------------------------------------------

    def assign(self, owner: Ownership) -> None:
        """One workspace to one VM (also a change of its users)."""
        self.perform(self.router.assign(owner))

    def release(self, workspace_id: str, *, tell_vm: bool = True) -> None:
        """Forget a workspace: its VM is told, its clients are unsubscribed."""
        self.perform(self.router.release(workspace_id, tell_vm=tell_vm))

    def sync(self, owners: list[Ownership]) -> None:
        """Replace the whole ownership table."""
        self.perform(self.router.sync(owners))

    def online_vm_events(self) -> list[dict[str, Any]]:
        """``vm_online`` for every VM online now (sent again after a ``sync``)."""
        return self.router.online_vm_events()

    def stats_reply(self) -> dict[str, Any]:
        """The ``stats`` control reply."""
        clients = sum(len(g) for g in self.clients_by_user.values())
        return {
            "relayId": self.relay_id,
            "connections": {"clients": clients, "vms": len(self.vm_peers)},
            "vmsOnline": len(self.vms),
            "workspaces": len(self.ownership),
            "rooms": self.router.room_count(),
            "messages": {
                "clientIn": self.stats.messages_in,
                "vmIn": self.stats.vm_frames_in,
                "out": self.stats.messages_out,
                "forwarded": self.stats.forwarded,
            },
            "drops": {
                "slowClients": self.stats.slow_closes,
                "rateLimited": self.stats.rate_limited,
                "auditOverflow": self.stats.audit_overflow,
                "refusedHandshakes": self.stats.refused,
            },
            "snapshots": {
                "requested": self.stats.snapshot_requests,
                "received": self.stats.snapshots,
                "replays": self.stats.replays,
            },
        }

"""The relay's routing core: ownership, rooms, and what each peer's frames do.

This is the thin I/O shell around :class:`relayd.room.Room`: it reads frames
from peers, feeds the rooms, and carries out their actions: it wakes the
writers of clients whose cursors have something to send (never waiting on a
client: each writer reads the room's log at its own pace, through
:meth:`Relay.read_log`) and asks VMs for snapshots. The sockets themselves are
handled in :mod:`relayd.server` and :mod:`relayd.control`.
"""

from __future__ import annotations

import collections
import datetime
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

import attrs
import trio

from relayd.control_events import ControlHub
from relayd.outbox import Entry, OutboxClosed
from relayd.peer import Peer
from relayd.ratelimit import TokenBucket
from relayd.revocations import RevocationState
from relayd.room import (
    Action,
    Anomaly,
    Cursor,
    RequestSnapshot,
    Room,
    StatusChanged,
    Wake,
)
from relayd.settings import Settings
from relayd.stats import Stats
from relayd.timers import Timers
from relayd.wsframes import FrameCache, frame_type
from wire.codec import BAD_JSON, REPEATED_KEY, ProtocolError, loads
from wire.envelope import Envelope, read_envelope, read_head
from wire.frames import (
    ErrorMessage,
    Hello,
    RequestResolved,
    SnapshotRequest,
    StatusMessage,
    VmAuth,
    WorkspaceReleased,
    encode_frame,
    structure,
)
from wire.messages import (
    Auth,
    ForwardedMessage,
    Subscribe,
    Unsubscribe,
    decode_client_message,
    dumps,
    encode_message,
    message_type,
)
from wire.protocol import (
    SEQUENCED_VM_TYPES,
    ClientType,
    CloseCode,
    ErrorCode,
    RelayType,
    Resolution,
    VmType,
)
from wire.tokens import TokenError, TokenVerifier

log = logging.getLogger("relayd")

VERSION: Final = "1"
#: Forwarded ``clientMessageId``/``requestId`` remembered per VM to route its errors back.
_ERROR_ROUTES: Final = 4096
#: VM frame types taken by the hot path of :meth:`Relay.vm_frames` (a status
#: frame also updates the room's status, so it takes the full path).
#: ``request_resolved`` is audited, so it takes the full path too.
_FAST_TYPES: Final = frozenset(
    str(t) for t in SEQUENCED_VM_TYPES if t not in (VmType.STATUS, VmType.REQUEST_RESOLVED)
)
#: Metrics keys of VM frames, made once.
_VM_IN_KEYS: Final = {str(t): f"vm:{t}" for t in VmType}
_CLIENT_IN_KEYS: Final = {str(t): f"client:{t}" for t in ClientType}
_VM_KEYS: Final = {t: _VM_IN_KEYS[t] for t in _FAST_TYPES}
#: Longest status word and detail relayd keeps from a VM's ``hello``.
MAX_STATUS_LENGTH: Final = 40
MAX_STATUS_DETAIL: Final = 1000
#: The audit action of a VM's ``request_resolved``, by resolution (a
#: cancellation is no one's decision and is not audited).
_AUDITED_RESOLUTIONS: Final[dict[str, str]] = {
    Resolution.ANSWERED: "question_response",
    Resolution.ALLOWED: "permission_response",
    Resolution.DENIED: "permission_response",
}
#: Longest ``userId`` an audit entry takes from a VM.
MAX_AUDIT_USER_ID: Final = 200


@attrs.frozen
class Ownership:
    """One row of the control plane's ownership table."""

    workspace_id: str
    vm_id: str
    user_ids: frozenset[str]
    issue: dict[str, Any]


class ClientPeer(Peer):
    """A client connection: its subscriptions and its rate limit."""

    __slots__ = ("bucket", "subscriptions")

    subscriptions: set[str]
    bucket: TokenBucket


class VmPeer(Peer):
    """A VM connection: what its ``hello`` said, and where its errors go."""

    __slots__ = ("error_routes", "hello_done", "logs", "statuses")

    logs: dict[str, tuple[str, int]]
    #: ``(status, detail)`` per workspace, as ``hello`` reported them.
    statuses: dict[str, tuple[str, str | None]]
    hello_done: bool
    error_routes: collections.OrderedDict[tuple[str, str], ClientPeer]


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
    """Everything relayd knows; one per process."""

    def __init__(self, settings: Settings, verifier: TokenVerifier) -> None:
        self.settings = settings
        self.verifier = verifier
        self.relay_id = uuid.uuid4().hex[:12]
        self.ownership: dict[str, Ownership] = {}
        self.rooms: dict[str, Room] = {}
        self.vms: dict[str, VmPeer] = {}
        self.vm_peers: set[VmPeer] = set()
        self.clients_by_user: dict[str, set[ClientPeer]] = {}
        self.stats = Stats()
        #: One frame's encoding, shared by every peer it is sent to.
        self.frame_cache = FrameCache()
        self._counters: dict[str, Callable[[dict[str, list[int]]], None]] = {}
        #: Every peer's timers (pings, expiry, stalls), fired by one task (:meth:`Timers.run`).
        self.timers = Timers()
        self.control = ControlHub(settings.audit_buffer, self.stats)
        #: The snapshot asked for per workspace, and when (for the latency histogram).
        self._snapshot_asked: dict[str, tuple[str, float]] = {}
        self.shutting_down = False
        #: True once the control plane sent its first ``sync`` since relayd started:
        #: only then is a workspace missing from ``ownership`` known not to be owned.
        self.synced = False
        #: Tokens refused although their signature is good (logout, password, vm revoke).
        self.revocations = RevocationState()

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
        peers: list[Peer] = []
        if user_id is not None:
            peers.extend(self.clients_by_user.get(user_id, ()))
        if vm_id is not None:
            peers.extend(p for p in self.vm_peers if p.sub == vm_id)
        for peer in peers:
            peer.close(CloseCode.CUT_OFF, "cut off by the control plane")
        return len(peers)

    def renew(self, peer: Peer, token: str) -> None:
        """Handle ``auth``: a new token for the same ``sub`` and scope moves the deadline."""
        try:
            claims = self.verifier.verify(token, scope=peer.scope)
        except TokenError as exc:
            peer.send_error(ErrorCode.FORBIDDEN, f"token refused: {exc}")
            return
        if claims.sub != peer.sub:
            peer.send_error(ErrorCode.FORBIDDEN, "the new token is for another subject")
            return
        revoked = self.revocations.refuses(claims)
        if revoked is not None:
            peer.send_error(ErrorCode.FORBIDDEN, f"token refused: {revoked}")
            return
        peer.renew(claims)
        log.info("token renewed", extra=peer.log_extra())

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

    # -- rooms ---------------------------------------------------------------

    def room(self, workspace_id: str) -> Room:
        """The room of an owned workspace, made on first use."""
        room = self.rooms.get(workspace_id)
        if room is None:
            room = Room(
                workspace_id,
                buffer_messages=self.settings.replay_messages,
                buffer_bytes=self.settings.replay_bytes,
            )
            self.rooms[workspace_id] = room
            owner = self.ownership.get(workspace_id)
            vm = self.vms.get(owner.vm_id) if owner is not None else None
            if vm is not None:
                self.apply(
                    room,
                    room.vm_connected(vm.logs.get(workspace_id), vm.statuses.get(workspace_id)),
                )
        return room

    def apply(self, room: Room, actions: Iterable[Action]) -> None:
        """Carry out a room's actions."""
        for action in actions:
            if isinstance(action, Wake):
                for cursor in action.cursors:
                    cast(ClientPeer, cursor.client).wake(cursor)
            elif isinstance(action, RequestSnapshot):
                owner = self.ownership.get(room.workspace_id)
                vm = self.vms.get(owner.vm_id) if owner is not None else None
                if vm is not None:
                    self.stats.snapshot_requests += 1
                    self._snapshot_asked[room.workspace_id] = (
                        action.request_id,
                        trio.current_time(),
                    )
                    vm.send_or_drop(
                        encode_frame(
                            SnapshotRequest(
                                workspace_id=room.workspace_id, request_id=action.request_id
                            )
                        )
                    )
            elif isinstance(action, StatusChanged):
                self.control.emit(
                    {
                        "type": "workspace_status",
                        "workspaceId": room.workspace_id,
                        "status": action.status,
                    }
                )
            elif isinstance(action, Anomaly):
                log.warning(action.message, extra={"workspaceId": room.workspace_id})

    def read_log(self, cursor: Cursor, max_chars: int) -> tuple[list[Entry], int]:
        """What a client's writer sends next for one cursor (see :meth:`Room.read`)."""
        room = cursor.room
        entries, chars, actions = room.read(cursor, max_chars)
        if actions:
            self.apply(room, actions)
        return entries, chars

    def peer_stalled(self, peer: Peer) -> None:
        """A peer took no bytes for ``--stall-timeout`` seconds and is being closed (4008)."""
        self.stats.slow_closes += 1
        if isinstance(peer, ClientPeer):
            self.forget_client_rooms(peer)

    def forget_client_rooms(self, client: ClientPeer) -> None:
        """Remove a client from every room it is in."""
        for workspace_id in list(client.subscriptions):
            room = self.rooms.get(workspace_id)
            if room is not None:
                room.unsubscribe(client)
        client.subscriptions.clear()

    def _allowed(self, workspace_id: str, user_id: str) -> Ownership | None:
        owner = self.ownership.get(workspace_id)
        if owner is None or user_id not in owner.user_ids:
            return None
        return owner

    # -- clients -------------------------------------------------------------

    def client_joined(self, client: ClientPeer) -> None:
        """Book a new client connection."""
        client.subscriptions = set()
        client.bucket = TokenBucket(
            self.settings.client_rate, self.settings.client_burst, trio.current_time()
        )
        self.clients_by_user.setdefault(client.sub, set()).add(client)
        self.stats.client_connections += 1

    def client_left(self, client: ClientPeer) -> None:
        """Forget a closed client connection."""
        self.forget_client_rooms(client)
        group = self.clients_by_user.get(client.sub)
        if group is not None:
            group.discard(client)
            if not group:
                del self.clients_by_user[client.sub]

    async def read_client(self, peer: Peer) -> None:
        """Read a client's frames until it closes."""
        assert isinstance(peer, ClientPeer)
        while True:
            for frame in await peer.ws.receive():
                if peer.closing:
                    return
                await self._client_frame(peer, frame)

    async def _client_frame(self, peer: ClientPeer, frame: str | bytes) -> None:
        """Handle one client frame (waits only while the owning VM's queue is full)."""
        self.stats.messages_in += 1
        # Known types only: a client's made-up types must not grow the metrics.
        self.stats.count_in(_CLIENT_IN_KEYS.get(frame_type(frame), "client:other"), len(frame))
        if not peer.bucket.allow(trio.current_time()):
            self.stats.rate_limited += 1
            peer.send_error(ErrorCode.RATE_LIMITED, "too many messages; slow down")
            return
        try:
            if isinstance(frame, bytes):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "binary frames are not accepted")
            message = decode_client_message(frame)
        except ProtocolError as exc:
            peer.send_error(exc.code, exc.message, ref=exc.ref)
            return
        if isinstance(message, Subscribe):
            self._subscribe(peer, message)
        elif isinstance(message, Unsubscribe):
            room = self.rooms.get(message.workspace_id)
            if room is not None:
                room.unsubscribe(peer)
            peer.subscriptions.discard(message.workspace_id)
        elif isinstance(message, Auth):
            self.renew(peer, message.token)
        else:
            await self._forward(peer, message)

    def _subscribe(self, client: ClientPeer, message: Subscribe) -> None:
        ws = message.workspace_id
        if self._allowed(ws, client.sub) is None:
            client.send_error(ErrorCode.NOT_FOUND, "no such workspace", workspace_id=ws)
            return
        if ws not in client.subscriptions and len(client.subscriptions) >= (
            self.settings.max_subscriptions
        ):
            client.send_error(
                ErrorCode.TOO_LARGE, "too many subscriptions on this connection", workspace_id=ws
            )
            return
        room = self.room(ws)
        client.subscriptions.add(ws)
        self.stats.subscribes += 1
        actions = room.subscribe(
            client,
            last_seq=message.last_seq,
            epoch=message.epoch,
            status_only=message.status_only,
        )
        cursor = room.cursor(client)
        if cursor is not None and not cursor.waiting and not cursor.status_only:
            self.stats.replays += 1
        self.apply(room, actions)

    async def _forward(self, client: ClientPeer, message: ForwardedMessage) -> None:
        ws = message.workspace_id
        kind = message_type(message)
        ref = getattr(message, "client_message_id", None) or getattr(message, "request_id", None)
        owner = self._allowed(ws, client.sub)
        if owner is None:
            client.send_error(ErrorCode.NOT_FOUND, "no such workspace", workspace_id=ws, ref=ref)
            return
        vm = self.vms.get(owner.vm_id)
        if vm is None:
            client.send_error(
                ErrorCode.VM_OFFLINE, "the workspace's VM is offline", workspace_id=ws, ref=ref
            )
            return
        frame = encode_message(attrs.evolve(message, user_id=client.sub))
        if ref is not None:
            vm.error_routes[(ws, ref)] = client
            vm.error_routes.move_to_end((ws, ref))
            while len(vm.error_routes) > _ERROR_ROUTES:
                vm.error_routes.popitem(last=False)
        try:
            # Waits while the VM's queue is full: this client is not read meanwhile.
            await vm.outbox.put(frame)
        except OutboxClosed:
            client.send_error(
                ErrorCode.VM_OFFLINE, "the workspace's VM went away", workspace_id=ws, ref=ref
            )
            return
        self.stats.forwarded += 1
        if kind == ClientType.INTERRUPT:
            # An interrupt settles nothing the VM reports back: it is audited as asked.
            self.control.emit(
                {
                    "type": "audit",
                    "workspaceId": ws,
                    "userId": client.sub,
                    "action": "interrupt",
                    "at": _now_iso(),
                }
            )

    # -- VMs -----------------------------------------------------------------

    def vm_joined(self, vm: VmPeer) -> None:
        """Book a new VM connection; an older one of the same VM is replaced."""
        vm.logs = {}
        vm.statuses = {}
        vm.hello_done = False
        vm.error_routes = collections.OrderedDict()
        self.vm_peers.add(vm)
        self.stats.vm_connections += 1
        old = self.vms.get(vm.sub)
        if old is not None:
            old.close(CloseCode.POLICY, "replaced by a newer connection of this VM")
            self._vm_offline(old)

    def vm_left(self, vm: VmPeer) -> None:
        """Forget a closed VM connection."""
        self.vm_peers.discard(vm)
        self._vm_offline(vm)

    def _vm_offline(self, vm: VmPeer) -> None:
        if self.vms.get(vm.sub) is not vm:
            return
        del self.vms[vm.sub]
        for owner in self.ownership.values():
            if owner.vm_id == vm.sub and owner.workspace_id in self.rooms:
                room = self.rooms[owner.workspace_id]
                self.apply(room, room.vm_disconnected())
        self.control.emit({"type": "vm_offline", "vmId": vm.sub})
        log.info("vm offline", extra=vm.log_extra())

    async def read_vm(self, peer: Peer) -> None:
        """Read a VM's frames until it closes (the hot path: envelope only)."""
        assert isinstance(peer, VmPeer)
        while True:
            # Every frame a socket read brought is handled in the same go, so
            # each client's writer finds the lot queued (one write for all).
            self.vm_frames(peer, await peer.ws.receive())

    def vm_frames(self, vm: VmPeer, frames: list[str | bytes]) -> None:
        """Handle the frames of one socket read of a VM, in order.

        The hot path: consecutive sequenced frames (not ``status``) of one
        workspace this VM owns, of one type and epoch with consecutive seqs,
        are collected into a run and given to their room at once
        (:meth:`_end_run`); anything else ends the run first and takes
        :meth:`_vm_frame`.
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
                key = "vm:other"
                try:
                    if isinstance(frame, bytes):
                        raise ProtocolError(ErrorCode.BAD_REQUEST, "binary frames are not accepted")
                    env = read_envelope(frame)
                    # Known types only: a VM's made-up types must not grow the metrics.
                    key = _VM_IN_KEYS.get(env.type, key)
                    self._vm_frame(vm, frame, env)
                except ProtocolError as exc:
                    self._vm_drop(vm, exc)
                finally:
                    stats.count_in(key, len(frame))
        finally:
            self._end_run(run)

    def _vm_drop(self, vm: VmPeer, exc: ProtocolError) -> None:
        """A VM frame that cannot be handled: counted, logged, and the VM told."""
        drops = self.stats.vm_drops
        drops[exc.reason] = drops.get(exc.reason, 0) + 1
        # A frame that is not the JSON it claims, or reads two ways, is a
        # broken or hostile VM; the rest (a race with a move) is routine.
        level = logging.WARNING if exc.reason in (BAD_JSON, REPEATED_KEY) else logging.INFO
        log.log(level, "vm frame dropped", extra=vm.log_extra(reason=exc.reason, error=exc.message))
        vm.send_error(exc.code, exc.message, ref=exc.ref)

    def _fast_head(self, vm: VmPeer, frame: str) -> tuple[Room, str, int, str] | None:
        """(room, type, seq, epoch) of a frame for the hot path, or None."""
        head = read_head(frame)
        if head is None or not vm.hello_done:
            return None
        kind, ws, seq, epoch, _ = head
        if kind not in _FAST_TYPES or ws is None or seq is None or epoch is None:
            return None
        owner = self.ownership.get(ws)
        room = self.rooms.get(ws)
        if owner is None or owner.vm_id != vm.sub or room is None:
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

    def _vm_frame(self, vm: VmPeer, frame: str, env: Envelope) -> None:
        kind = env.type
        if kind in SEQUENCED_VM_TYPES or kind == VmType.MESSAGES_SNAPSHOT:
            if not vm.hello_done:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "send hello first")
            ws = env.workspace_id
            if ws is None or env.seq is None or env.epoch is None:
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST, f"{kind} needs workspaceId, seq and epoch"
                )
            owner = self.ownership.get(ws)
            if owner is None or owner.vm_id != vm.sub:
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, "this VM does not own the workspace", env.request_id
                )
            room = self.room(ws)
            if kind == VmType.MESSAGES_SNAPSHOT:
                self.stats.snapshots += 1
                asked = self._snapshot_asked.get(ws)
                if asked is not None and asked[0] == env.request_id:
                    del self._snapshot_asked[ws]
                    self.stats.snapshot_latency.observe(trio.current_time() - asked[1])
                self.apply(room, room.vm_snapshot(env.request_id, env.seq, env.epoch, frame))
            elif kind == VmType.STATUS:
                status = structure(_body(env, frame), StatusMessage)
                vm.statuses[ws] = (status.status, status.detail)
                self.apply(room, room.vm_frame(env.seq, env.epoch, frame, status=status.status))
            elif kind == VmType.REQUEST_RESOLVED:
                resolved = structure(_body(env, frame), RequestResolved)
                fresh = env.epoch != room.epoch or env.seq > room.head
                self.apply(room, room.vm_frame(env.seq, env.epoch, frame))
                if fresh:
                    self._audit_resolution(resolved)
            else:
                self.apply(room, room.vm_frame(env.seq, env.epoch, frame))
        elif kind == VmType.HELLO:
            self._hello(vm, structure(_body(env, frame), Hello))
        elif kind == VmType.ERROR:
            self._vm_error(vm, structure(_body(env, frame), ErrorMessage), frame)
        elif kind == VmType.AUTH:
            self.renew(vm, structure(_body(env, frame), VmAuth).token)
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}")

    def _hello(self, vm: VmPeer, hello: Hello) -> None:
        if hello.vm_id is not None and hello.vm_id != vm.sub:
            raise ProtocolError(ErrorCode.FORBIDDEN, "vmId does not match the token")
        logs: dict[str, tuple[str, int]] = {}
        statuses: dict[str, tuple[str, str | None]] = {}
        for entry in hello.workspaces:
            logs[entry.workspace_id] = (entry.epoch, entry.seq)
            # An extension of the contract's entry: the log's current status,
            # so subscribers hear the VM is back (too long a word is ignored).
            status, detail = entry.status, entry.status_detail
            if status is not None and 0 < len(status) <= MAX_STATUS_LENGTH:
                statuses[entry.workspace_id] = (
                    status,
                    detail[:MAX_STATUS_DETAIL] if detail is not None else None,
                )
        vm.logs = logs
        vm.statuses = statuses
        first = not vm.hello_done
        vm.hello_done = True
        self.vms[vm.sub] = vm
        log.info(
            "vm online",
            extra=vm.log_extra(agentVersion=str(hello.agent_version)[:64], logs=len(logs)),
        )
        if first:
            self.control.emit({"type": "vm_online", "vmId": vm.sub})
        # Assignments first, so the VM knows a workspace before its snapshot request.
        owned = [o for o in self.ownership.values() if o.vm_id == vm.sub]
        for owner in owned:
            vm.send_or_drop(_assigned_frame(owner))
        for owner in owned:
            room = self.rooms.get(owner.workspace_id)
            if room is not None:
                self.apply(
                    room,
                    room.vm_connected(
                        logs.get(owner.workspace_id), statuses.get(owner.workspace_id)
                    ),
                )
        self._release_stale_logs(vm)

    def _release_stale_logs(self, vm: VmPeer) -> None:
        """Tell a VM to stop the workspaces it holds but no longer owns.

        A workspace deleted or moved while its VM was offline is still in the
        VM's ``hello``. Only once the ownership table is the control plane's
        (its first ``sync``) is "not in the table" proof of that; before, a
        workspace may be missing only because relayd has just restarted.
        """
        if not self.synced:
            return
        for workspace_id in list(vm.logs):
            owner = self.ownership.get(workspace_id)
            if owner is None or owner.vm_id != vm.sub:
                del vm.logs[workspace_id]
                vm.statuses.pop(workspace_id, None)
                vm.send_or_drop(_released_frame(workspace_id))
                log.info(
                    "vm holds a workspace it does not own; released",
                    extra=vm.log_extra(workspaceId=workspace_id),
                )

    def _audit_resolution(self, resolved: RequestResolved) -> None:
        """Audit a decision as the VM settled it (who answered, what was decided)."""
        action = _AUDITED_RESOLUTIONS.get(resolved.resolution)
        if action is None:
            return
        event: dict[str, Any] = {"type": "audit", "workspaceId": resolved.workspace_id}
        if resolved.user_id is not None:
            event["userId"] = resolved.user_id
        event["action"] = action
        event["requestId"] = resolved.request_id
        event["resolution"] = str(resolved.resolution)
        if action == "permission_response":
            event["allow"] = resolved.resolution == Resolution.ALLOWED
        event["at"] = _now_iso()
        self.control.emit(event)

    def _vm_error(self, vm: VmPeer, error: ErrorMessage, frame: str) -> None:
        workspace_id, ref = error.workspace_id, error.ref
        if ref is not None and workspace_id is not None:
            routed = vm.error_routes.get((workspace_id, ref))
            if routed is not None and not routed.closing:
                routed.send_or_drop(frame)
                return
        if workspace_id is not None and workspace_id in self.rooms:
            owner = self.ownership.get(workspace_id)
            if owner is not None and owner.vm_id == vm.sub:
                for client in self.rooms[workspace_id].clients:
                    assert isinstance(client, ClientPeer)
                    client.send_or_drop(frame)
                return
        log.info("vm error with no one to tell", extra=vm.log_extra(code=str(error.code)))

    # -- ownership (control socket) --------------------------------------------

    def assign(self, owner: Ownership) -> None:
        """One workspace to one VM (also a change of its users)."""
        old = self.ownership.get(owner.workspace_id)
        self.ownership[owner.workspace_id] = owner
        room = self.rooms.get(owner.workspace_id)
        if old is not None and old.vm_id != owner.vm_id:
            old_vm = self.vms.get(old.vm_id)
            if old_vm is not None:
                old_vm.logs.pop(owner.workspace_id, None)
                old_vm.statuses.pop(owner.workspace_id, None)
                old_vm.send_or_drop(_released_frame(owner.workspace_id))
            if room is not None:
                self.apply(room, room.vm_disconnected())
        vm = self.vms.get(owner.vm_id)
        if vm is not None and (old is None or old.vm_id != owner.vm_id or old.issue != owner.issue):
            vm.send_or_drop(_assigned_frame(owner))
        if room is not None:
            if vm is not None and (old is None or old.vm_id != owner.vm_id):
                self.apply(
                    room,
                    room.vm_connected(
                        vm.logs.get(owner.workspace_id), vm.statuses.get(owner.workspace_id)
                    ),
                )
            self._drop_unallowed(room, owner.user_ids)

    def release(self, workspace_id: str, *, tell_vm: bool = True) -> None:
        """Forget a workspace: its VM is told, its clients are unsubscribed."""
        old = self.ownership.pop(workspace_id, None)
        if old is not None and tell_vm:
            vm = self.vms.get(old.vm_id)
            if vm is not None:
                vm.logs.pop(workspace_id, None)
                vm.statuses.pop(workspace_id, None)
                vm.send_or_drop(_released_frame(workspace_id))
        room = self.rooms.pop(workspace_id, None)
        if room is not None:
            for client in room.clients:
                assert isinstance(client, ClientPeer)
                room.unsubscribe(client)
                client.subscriptions.discard(workspace_id)
                client.send_error(
                    ErrorCode.NOT_FOUND, "the workspace was released", workspace_id=workspace_id
                )

    def sync(self, owners: list[Ownership]) -> None:
        """Replace the whole ownership table."""
        wanted = {o.workspace_id: o for o in owners}
        for workspace_id in list(self.ownership):
            if workspace_id not in wanted:
                self.release(workspace_id)
        for owner in owners:
            self.assign(owner)
        if not self.synced:
            # The table is authoritative from now on: VMs that said hello
            # before it came hear now about what they hold but do not own.
            self.synced = True
            for vm in list(self.vms.values()):
                self._release_stale_logs(vm)

    def _drop_unallowed(self, room: Room, user_ids: frozenset[str]) -> None:
        for client in room.clients:
            assert isinstance(client, ClientPeer)
            if client.sub not in user_ids:
                room.unsubscribe(client)
                client.subscriptions.discard(room.workspace_id)
                client.send_error(
                    ErrorCode.NOT_FOUND, "no such workspace", workspace_id=room.workspace_id
                )

    def online_vm_events(self) -> list[dict[str, Any]]:
        """``vm_online`` for every VM online now (sent again after a ``sync``)."""
        return [{"type": "vm_online", "vmId": vm_id} for vm_id in sorted(self.vms)]

    def stats_reply(self) -> dict[str, Any]:
        """The ``stats`` control reply."""
        clients = sum(len(g) for g in self.clients_by_user.values())
        return {
            "relayId": self.relay_id,
            "connections": {"clients": clients, "vms": len(self.vm_peers)},
            "vmsOnline": len(self.vms),
            "workspaces": len(self.ownership),
            "rooms": len(self.rooms),
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


def _body(env: Envelope, frame: str) -> Any:
    """The decoded frame: the slow path's, or a strict parse of the text."""
    return env.body if env.body is not None else loads(frame)


def _assigned_frame(owner: Ownership) -> str:
    return dumps(
        {
            "type": RelayType.WORKSPACE_ASSIGNED,
            "workspaceId": owner.workspace_id,
            "issue": owner.issue,
        }
    )


def _released_frame(workspace_id: str) -> str:
    return encode_frame(WorkspaceReleased(workspace_id=workspace_id))


def _now_iso() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"

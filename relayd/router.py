"""relayd's routing rules, without sockets.

The ownership table, who may send what to whom, the checks of a VM's
``hello``, the audit trail and the counters. Events come in as calls (a
client's frame, a VM's frame decoded whole, a peer joining or leaving, the
control plane's requests) and every effect on a peer or the control plane
comes out as an action (:data:`RouterAction`) for the trio shell,
:class:`relayd.relay.Relay`, to carry out, as :mod:`relayd.room` does for one
room. The shell keeps the delivery mechanics (writers, cursors, the hot
path's runs of VM frames); the router never waits and never touches a socket.

Peers are whatever has the few attributes of :class:`ClientLike` and
:class:`VmLike`: relayd's own :class:`relayd.relay.ClientPeer` and
:class:`relayd.relay.VmPeer`, or a test's plain objects.
"""

from __future__ import annotations

import collections
import datetime
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol, TypeAlias

import attrs

from relayd.ratelimit import TokenBucket
from relayd.revocations import RevocationState
from relayd.room import (
    Action,
    Anomaly,
    ClientKey,
    RequestSnapshot,
    Room,
    StatusChanged,
    Wake,
    Workspace,
)
from relayd.routes import Key, Route, Routes
from relayd.settings import Settings
from relayd.stats import Stats
from relayd.wsframes import frame_type
from wire.codec import BAD_JSON, REPEATED_KEY, ProtocolError, loads
from wire.envelope import Envelope, read_envelope
from wire.frames import (
    ErrorMessage,
    Hello,
    Reply,
    RequestResolved,
    SnapshotRequest,
    StatusMessage,
    TerminalExit,
    TerminalOutput,
    VmAuth,
    WorkspaceReleased,
    encode_frame,
    structure,
)
from wire.messages import (
    MAX_ID_LENGTH,
    Auth,
    ForwardedMessage,
    Request,
    Subscribe,
    TerminalClose,
    TerminalInput,
    TerminalResize,
    Unsubscribe,
    decode_client_message,
    dumps,
    encode_message,
    message_type,
)
from wire.protocol import (
    MAIN_SESSION,
    SEQUENCED_VM_TYPES,
    TERMINAL_OPEN,
    ClientType,
    CloseCode,
    ErrorCode,
    RelayType,
    Resolution,
    Scope,
    Status,
    VmType,
    session_or_main,
    written_session,
)
from wire.tokens import Claims, TokenError, TokenVerifier

log = logging.getLogger("relayd")

#: Forwarded ``clientMessageId``/``requestId`` remembered per VM to route its errors back.
ERROR_ROUTES: Final = 4096
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
#: Metrics keys of frames in, made once.
VM_IN_KEYS: Final = {str(t): f"vm:{t}" for t in VmType}
_CLIENT_IN_KEYS: Final = {str(t): f"client:{t}" for t in ClientType}

#: A subscription: (workspaceId, sessionId).
SessionKey: TypeAlias = tuple[str, str]
#: What a VM's ``hello`` listed: per workspace, per session.
SessionLogs: TypeAlias = dict[str, dict[str, tuple[str, int]]]
SessionStatuses: TypeAlias = dict[str, dict[str, tuple[str, str | None]]]


@attrs.frozen
class Ownership:
    """One row of the control plane's ownership table."""

    workspace_id: str
    vm_id: str
    user_ids: frozenset[str]
    issue: dict[str, Any]


# -- what the router needs of a peer -------------------------------------------


class RouterPeer(Protocol):
    """A connection as the router sees it (the shell performs the sending)."""

    sub: str
    scope: Scope

    def __hash__(self) -> int:
        """Peers are keys of rooms and tables (by identity)."""
        ...

    @property
    def closing(self) -> bool:
        """True once the connection is closing."""
        ...

    def log_extra(self, **more: Any) -> dict[str, Any]:
        """Ids for a log line."""
        ...

    def send_or_drop(self, frame: str) -> None:
        """Queue one frame."""
        ...

    def send_error(
        self,
        code: ErrorCode,
        message: str,
        *,
        workspace_id: str | None = None,
        ref: str | None = None,
    ) -> None:
        """Queue an ``error``."""
        ...

    def close(self, code: int, reason: str = "") -> None:
        """Close after the frame in flight."""
        ...

    def renew(self, claims: Claims) -> None:
        """A fresh token moves the deadline."""
        ...


class ClientLike(RouterPeer, Protocol):
    """A client connection: its subscriptions and its rate limit."""

    subscriptions: set[SessionKey]
    bucket: TokenBucket


class VmLike(RouterPeer, Protocol):
    """A VM connection: what its ``hello`` said, and where its errors go."""

    #: ``(epoch, seq)`` per workspace and session, as ``hello`` listed them.
    logs: SessionLogs
    #: ``(status, detail)`` per workspace and session, as ``hello`` reported them.
    statuses: SessionStatuses
    hello_done: bool
    error_routes: collections.OrderedDict[tuple[str, str], Any]


# -- actions -------------------------------------------------------------------


@attrs.frozen
class Send:
    """Queue one of relayd's own frames (or a VM's, passed on) for a peer."""

    peer: RouterPeer
    frame: str


@attrs.frozen
class SendError:
    """Queue an ``error`` for a peer."""

    peer: RouterPeer
    code: ErrorCode
    message: str
    workspace_id: str | None = None
    ref: str | None = None


@attrs.frozen
class Close:
    """Close a peer."""

    peer: RouterPeer
    code: int
    reason: str


@attrs.frozen
class Renew:
    """A peer's token was renewed."""

    peer: RouterPeer
    claims: Claims


@attrs.frozen
class Emit:
    """An event for the control plane."""

    event: dict[str, Any]


@attrs.frozen
class Forward:
    """A client's message for its workspace's VM. The shell waits while the VM's
    queue is full and then calls :meth:`Router.forwarded` (or sends ``error``
    ``vm_offline`` when the VM went away meanwhile)."""

    client: ClientLike
    vm: VmLike
    frame: str
    workspace_id: str
    ref: str | None
    kind: str
    #: The session the message is about (None: main), for the audit.
    session_id: str | None = None


RouterAction: TypeAlias = Send | SendError | Close | Renew | Emit | Forward | Wake


class Router:
    """Everything relayd decides; one per process, driven by :class:`relayd.relay.Relay`."""

    def __init__(
        self,
        settings: Settings,
        verifier: TokenVerifier,
        stats: Stats,
        *,
        clock: Callable[[], float],
        revocations: RevocationState | None = None,
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self.stats = stats
        self.clock = clock
        self.revocations = revocations or RevocationState()
        self.ownership: dict[str, Ownership] = {}
        #: The rooms, per workspace and then per session.
        self.workspaces: dict[str, Workspace] = {}
        #: VMs that said ``hello``, by id.
        self.vms: dict[str, VmLike] = {}
        self.vm_peers: set[VmLike] = set()
        self.clients_by_user: dict[str, set[ClientLike]] = {}
        #: The snapshot asked for per session, and when (for the latency histogram).
        self._snapshot_asked: dict[SessionKey, tuple[str, float]] = {}
        #: True once the control plane sent its first ``sync`` since relayd started:
        #: only then is a workspace missing from ``ownership`` known not to be owned.
        self.synced = False
        #: Requests awaiting their ``reply``, by (workspace, requestId), and
        #: the keys each client has in flight (its limit, and its cleanup).
        self.in_flight: Routes[ClientLike, VmLike] = Routes()
        #: When each booked request times out, in booking order (one timeout for
        #: all, so the earliest is first): ``(due, key, its booking)``. An entry
        #: whose request was answered meanwhile stays until it is due or pruned.
        self._request_deadlines: collections.deque[tuple[float, Key, Route[ClientLike, VmLike]]] = (
            collections.deque()
        )
        #: The ``terminal_open`` requests among them: a good reply books a terminal.
        self._terminal_opens: set[Key] = set()
        #: Open terminals, by (workspace, terminalId): their output goes from
        #: the VM to the connection that opened them, and nowhere else.
        self.terminals: Routes[ClientLike, VmLike] = Routes()
        #: The opaque id each client connection's requests are tagged with.
        self._connection_ids: dict[ClientLike, str] = {}
        self._next_connection = 0

    # -- rooms ---------------------------------------------------------------

    def room(self, workspace_id: str, session_id: str, out: list[RouterAction]) -> Room | None:
        """The room of an owned workspace's session, made on first use; None when the
        workspace has ``--max-sessions-per-workspace`` rooms that are all in use."""
        workspace = self.workspaces.get(workspace_id)
        if workspace is None:
            workspace = Workspace(workspace_id)
            self.workspaces[workspace_id] = workspace
            # main first: its room holds the workspace's statusOnly readers.
            self._new_room(workspace, MAIN_SESSION, out)
            vm = self._owner_vm(workspace_id)
            if vm is not None:
                self._add_listed(workspace, vm, out)
        room = workspace.rooms.get(session_id)
        if room is None and self._make_space(workspace):
            room = self._new_room(workspace, session_id, out)
        return room

    def find_room(self, workspace_id: str, session_id: str = MAIN_SESSION) -> Room | None:
        """The room of a session, if it has one."""
        workspace = self.workspaces.get(workspace_id)
        return workspace.rooms.get(session_id) if workspace is not None else None

    def room_count(self) -> int:
        """How many session rooms relayd holds."""
        return sum(len(w.rooms) for w in self.workspaces.values())

    def _new_room(self, workspace: Workspace, session_id: str, out: list[RouterAction]) -> Room:
        ws = workspace.workspace_id
        room = Room(
            ws,
            session_id,
            buffer_messages=self.settings.replay_messages,
            buffer_bytes=self.settings.replay_bytes,
            workspace=workspace,
        )
        vm = self._owner_vm(ws)
        if vm is not None:
            log, status = _listed(vm, ws, session_id)
            self.apply(room, room.vm_connected(log, status), out)
        return room

    def _make_space(self, workspace: Workspace, *, evict: bool = True) -> bool:
        """Room for one more session: under the limit, or by forgetting the room of
        a session no one follows that matters least (no status or ``stopped``,
        then the one whose status changed longest ago). A session the VM deleted
        long ago must not block new ones; a forgotten room is made afresh when
        needed (its subscribers then get a snapshot)."""
        rooms = workspace.rooms
        if len(rooms) < self.settings.max_sessions_per_workspace:
            return True
        if not evict:
            return False
        idle = [r for sid, r in rooms.items() if sid != MAIN_SESSION and not r.clients]
        if not idle:
            return False
        victim = min(idle, key=lambda r: (r.status not in (None, Status.STOPPED), r.status_changed))
        del rooms[victim.session_id]
        self._snapshot_asked.pop((workspace.workspace_id, victim.session_id), None)
        return True

    def _add_listed(self, workspace: Workspace, vm: VmLike, out: list[RouterAction]) -> None:
        """Rooms for the sessions the VM listed for the workspace, so that its
        aggregate status counts every one of them."""
        for session_id in vm.logs.get(workspace.workspace_id, {}):
            if session_id not in workspace.rooms:
                # Not at the cost of another listed session's room.
                if not self._make_space(workspace, evict=False):
                    log.warning(
                        "vm lists more sessions than relayd keeps; the rest are ignored",
                        extra=vm.log_extra(workspaceId=workspace.workspace_id),
                    )
                    return
                self._new_room(workspace, session_id, out)

    def _connect(self, workspace: Workspace, vm: VmLike, out: list[RouterAction]) -> None:
        """The owning VM is (back) online: every room of the workspace hears it."""
        existing = list(workspace.rooms.values())
        # New rooms first: the workspace stays offline to its statusOnly readers
        # until the last of the old ones is told, so they see one change, not several.
        self._add_listed(workspace, vm, out)
        ws = workspace.workspace_id
        for room in existing:
            log, status = _listed(vm, ws, room.session_id)
            self.apply(room, room.vm_connected(log, status), out)

    def _disconnect(self, workspace: Workspace, out: list[RouterAction]) -> None:
        """The owning VM went away (or the workspace moved): every room hears it."""
        for room in list(workspace.rooms.values()):
            self.apply(room, room.vm_disconnected(), out)

    def apply(self, room: Room, actions: Iterable[Action], out: list[RouterAction]) -> None:
        """A room's actions as the router's (``out`` gets them)."""
        for action in actions:
            if isinstance(action, Wake):
                out.append(action)
            elif isinstance(action, RequestSnapshot):
                vm = self._owner_vm(room.workspace_id)
                if vm is not None:
                    self.stats.snapshot_requests += 1
                    key = (room.workspace_id, room.session_id)
                    self._snapshot_asked[key] = (action.request_id, self.clock())
                    request = SnapshotRequest(
                        workspace_id=room.workspace_id,
                        session_id=written_session(room.session_id),
                        request_id=action.request_id,
                    )
                    out.append(Send(vm, encode_frame(request)))
            elif isinstance(action, StatusChanged):
                out.append(
                    Emit(
                        {
                            "type": "workspace_status",
                            "workspaceId": room.workspace_id,
                            "status": action.status,
                        }
                    )
                )
            elif isinstance(action, Anomaly):
                log.warning(action.message, extra={"workspaceId": room.workspace_id})

    def room_actions(self, room: Room, actions: Iterable[Action]) -> list[RouterAction]:
        """:meth:`apply` for a caller with no list of its own."""
        out: list[RouterAction] = []
        self.apply(room, actions, out)
        return out

    def _owner_vm(self, workspace_id: str) -> VmLike | None:
        owner = self.ownership.get(workspace_id)
        return self.vms.get(owner.vm_id) if owner is not None else None

    def _allowed(self, workspace_id: str, user_id: str) -> Ownership | None:
        owner = self.ownership.get(workspace_id)
        if owner is None or user_id not in owner.user_ids:
            return None
        return owner

    # -- peers ---------------------------------------------------------------

    def all_peers(self) -> list[RouterPeer]:
        """Every peer booked."""
        peers: list[RouterPeer] = list(self.vm_peers)
        for group in self.clients_by_user.values():
            peers.extend(group)
        return peers

    def disconnect(self, *, user_id: str | None = None, vm_id: str | None = None) -> list[Close]:
        """Cut a user's or a VM's connections off (4403)."""
        peers: list[RouterPeer] = []
        if user_id is not None:
            peers.extend(self.clients_by_user.get(user_id, ()))
        if vm_id is not None:
            peers.extend(p for p in self.vm_peers if p.sub == vm_id)
        return [Close(p, CloseCode.CUT_OFF, "cut off by the control plane") for p in peers]

    def moved(self, workspace_ids: Iterable[str]) -> list[Close]:
        """Close (4307) every client that follows one of these workspaces.

        Their VM is connected to another node now: the clients ask the API
        for the workspace's relay URL and resume there from their ``lastSeq``.
        """
        wanted = set(workspace_ids)
        return [
            Close(client, CloseCode.MOVED, "the workspace moved to another node")
            for group in self.clients_by_user.values()
            for client in group
            if any(ws in wanted for ws, _ in client.subscriptions)
        ]

    def renew(self, peer: RouterPeer, token: str) -> RouterAction:
        """``auth``: a new token for the same ``sub`` and scope moves the deadline."""
        try:
            claims = self.verifier.verify(token, scope=peer.scope)
        except TokenError as exc:
            return SendError(peer, ErrorCode.FORBIDDEN, f"token refused: {exc}")
        if claims.sub != peer.sub:
            return SendError(peer, ErrorCode.FORBIDDEN, "the new token is for another subject")
        revoked = self.revocations.refuses(claims)
        if revoked is not None:
            return SendError(peer, ErrorCode.FORBIDDEN, f"token refused: {revoked}")
        return Renew(peer, claims)

    def forget_client_rooms(self, client: ClientLike) -> None:
        """Remove a client from every room it is in."""
        for workspace_id, session_id in list(client.subscriptions):
            room = self.find_room(workspace_id, session_id)
            if room is not None:
                room.unsubscribe(client)
        client.subscriptions.clear()

    # -- clients -------------------------------------------------------------

    def client_joined(self, client: ClientLike) -> None:
        """Book a new client connection."""
        self.clients_by_user.setdefault(client.sub, set()).add(client)
        self.stats.client_connections += 1

    def client_left(self, client: ClientLike) -> list[RouterAction]:
        """Forget a closed client connection; its VMs close its terminals."""
        self.forget_client_rooms(client)
        conn = self._connection_ids.pop(client, None)
        for key, _route in self.in_flight.drop_client(client):
            self._terminal_opens.discard(key)
        out: list[RouterAction] = []
        for (ws, terminal_id), route in self.terminals.drop_client(client):
            # The VM ends the PTY of a connection that is gone (no orphans).
            close = TerminalClose(
                workspace_id=ws, terminal_id=terminal_id, user_id=client.sub, connection_id=conn
            )
            out.append(Send(route.vm, encode_message(close)))
        group = self.clients_by_user.get(client.sub)
        if group is not None:
            group.discard(client)
            if not group:
                del self.clients_by_user[client.sub]
        return out

    def client_frame(self, client: ClientLike, frame: str | bytes) -> list[RouterAction]:
        """One frame from a client: its answer, or what to forward."""
        stats = self.stats
        stats.messages_in += 1
        # Known types only: a client's made-up types must not grow the metrics.
        stats.count_in(_CLIENT_IN_KEYS.get(frame_type(frame), "client:other"), len(frame))
        if not client.bucket.allow(self.clock()):
            stats.rate_limited += 1
            return [SendError(client, ErrorCode.RATE_LIMITED, "too many messages; slow down")]
        try:
            message = decode_client_message(frame)
        except ProtocolError as exc:
            return [SendError(client, exc.code, exc.message, ref=exc.ref)]
        out: list[RouterAction] = []
        if isinstance(message, Subscribe):
            self.subscribe(client, message, out)
        elif isinstance(message, Unsubscribe):
            session_id = session_or_main(message.session_id)
            room = self.find_room(message.workspace_id, session_id)
            if room is not None:
                room.unsubscribe(client)
            client.subscriptions.discard((message.workspace_id, session_id))
        elif isinstance(message, Auth):
            out.append(self.renew(client, message.token))
        elif isinstance(message, Request):
            out.append(self._request(client, message))
        elif isinstance(message, TerminalInput | TerminalResize | TerminalClose):
            out.append(self._terminal(client, message))
        else:
            out.append(self._forward(client, message))
        return out

    def subscribe(self, client: ClientLike, message: Subscribe, out: list[RouterAction]) -> None:
        """``subscribe``: the room's answer, or ``error``.

        A ``statusOnly`` subscription is the workspace's (its ``sessionId`` is
        ignored): it is booked as main's and lives in main's room.
        """
        ws = message.workspace_id
        session_id = MAIN_SESSION if message.status_only else session_or_main(message.session_id)
        key = (ws, session_id)
        if self._allowed(ws, client.sub) is None:
            out.append(SendError(client, ErrorCode.NOT_FOUND, "no such workspace", ws))
            return
        if (
            key not in client.subscriptions
            and len(client.subscriptions) >= self.settings.max_subscriptions
        ):
            out.append(
                SendError(
                    client, ErrorCode.TOO_LARGE, "too many subscriptions on this connection", ws
                )
            )
            return
        room = self.room(ws, session_id, out)
        if room is None:
            out.append(
                SendError(client, ErrorCode.TOO_LARGE, "too many sessions in this workspace", ws)
            )
            return
        client.subscriptions.add(key)
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
        self.apply(room, actions, out)

    def connection_id(self, client: ClientLike) -> str:
        """The id relayd tags a connection's requests with (opaque, never reused here)."""
        conn = self._connection_ids.get(client)
        if conn is None:
            self._next_connection += 1
            conn = f"c{self._next_connection}"
            self._connection_ids[client] = conn
        return conn

    def _request(self, client: ClientLike, message: Request) -> RouterAction:
        """``request``: forwarded like every client message, and booked so that
        its ``reply`` reaches this connection alone."""
        ws, ref = message.workspace_id, message.request_id
        key = (ws, ref)
        if key in self.in_flight:
            return SendError(
                client, ErrorCode.BAD_REQUEST, "that requestId is already in flight", ws, ref
            )
        if self.in_flight.count(client) >= self.settings.max_requests_in_flight:
            return SendError(
                client,
                ErrorCode.RATE_LIMITED,
                "too many requests in flight; wait for replies",
                ws,
                ref,
            )
        action = self._forward(
            client, attrs.evolve(message, connection_id=self.connection_id(client))
        )
        if isinstance(action, Forward):
            self.stats.requests += 1
            self.in_flight.book(key, client, action.vm)
            self._track_deadline(key)
            if message.op == TERMINAL_OPEN:
                self._terminal_opens.add(key)
        return action

    def _track_deadline(self, key: Key) -> None:
        timeout = self.settings.request_timeout
        route = self.in_flight.get(key)
        if timeout <= 0 or route is None:
            return
        deadlines = self._request_deadlines
        deadlines.append((self.clock() + timeout, key, route))
        if len(deadlines) > 2 * len(self.in_flight) + 64:
            # Mostly answered ones: keep the queue near the requests in flight.
            live = [d for d in deadlines if self.in_flight.get(d[1]) is d[2]]
            deadlines.clear()
            deadlines.extend(live)

    def next_request_due(self) -> float:
        """When :meth:`expire_requests` has work next (inf: no request is timed)."""
        deadlines = self._request_deadlines
        return deadlines[0][0] if deadlines else math.inf

    def expire_requests(self, now: float) -> list[RouterAction]:
        """End the requests ``--request-timeout`` old: the client hears ``error``
        ``vm_offline`` (``ref`` its ``requestId``), its slot is free, and a late
        reply is dropped as stale."""
        out: list[RouterAction] = []
        deadlines = self._request_deadlines
        while deadlines and deadlines[0][0] <= now:
            _due, key, route = deadlines.popleft()
            if self.in_flight.get(key) is not route:
                continue  # answered (or ended) meanwhile
            self.in_flight.drop(key)
            self._terminal_opens.discard(key)
            self.stats.request_timeouts += 1
            if not route.client.closing:
                out.append(
                    SendError(
                        route.client,
                        ErrorCode.VM_OFFLINE,
                        "the workspace's VM did not answer in time",
                        key[0],
                        key[1],
                    )
                )
        return out

    def _terminal(
        self, client: ClientLike, message: TerminalInput | TerminalResize | TerminalClose
    ) -> RouterAction:
        """A frame for a terminal: forwarded (authorized like every client
        message) only when this connection opened that terminal."""
        ws = message.workspace_id
        route = self.terminals.get((ws, message.terminal_id))
        if route is None or route.client is not client:
            return SendError(client, ErrorCode.NOT_FOUND, "no such terminal", ws)
        return self._forward(
            client, attrs.evolve(message, connection_id=self.connection_id(client))
        )

    def _settle(self, key: tuple[str, str], vm: VmLike) -> ClientLike | None:
        """The client waiting for ``key`` from this VM, no longer waiting; or None."""
        client = self.in_flight.settle(key, vm)
        if client is None:
            return None
        self._terminal_opens.discard(key)
        return None if client.closing else client

    def _fail_requests(self, vm: VmLike, workspace_id: str | None, out: list[RouterAction]) -> None:
        """The requests a VM will not answer now (it left, or lost the workspace)
        end with ``error`` ``vm_offline``, so no client waits for ever."""
        for key, route in self.in_flight.drop_vm(vm, workspace_id):
            self._terminal_opens.discard(key)
            if not route.client.closing:
                out.append(
                    SendError(
                        route.client,
                        ErrorCode.VM_OFFLINE,
                        "the workspace's VM went away before it answered",
                        key[0],
                        key[1],
                    )
                )
        for (ws, terminal_id), route in self.terminals.drop_vm(vm, workspace_id):
            if not route.client.closing:
                gone = {
                    "type": VmType.TERMINAL_EXIT,
                    "workspaceId": ws,
                    "terminalId": terminal_id,
                    "reason": "vm_offline",
                }
                out.append(Send(route.client, dumps(gone)))

    def _reply(self, vm: VmLike, reply: Reply, frame: str, out: list[RouterAction]) -> None:
        """A VM's ``reply``: to the one connection that asked, through its own queue."""
        key = (reply.workspace_id, reply.request_id)
        opening = key in self._terminal_opens
        client = self._settle(key, vm)
        if client is None:
            self.stats.stale_replies += 1
            return
        if opening and reply.ok and isinstance(reply.result, dict):
            terminal_id = reply.result.get("terminalId")
            if isinstance(terminal_id, str) and 0 < len(terminal_id) <= MAX_ID_LENGTH:
                self.terminals.book((reply.workspace_id, terminal_id), client, vm)
        self.stats.replies += 1
        out.append(Send(client, frame))

    def _terminal_frame(
        self,
        vm: VmLike,
        frame_of: TerminalOutput | TerminalExit,
        frame: str,
        out: list[RouterAction],
    ) -> None:
        """A terminal's output or end: to the connection that opened it, and no other."""
        key = (frame_of.workspace_id, frame_of.terminal_id)
        route = self.terminals.get(key)
        if (
            route is None
            or route.vm is not vm
            or self._connection_ids.get(route.client) != frame_of.connection_id
        ):
            self.stats.stale_terminal_frames += 1
            return
        if isinstance(frame_of, TerminalExit):
            self.terminals.drop(key)
        if not route.client.closing:
            self.stats.terminal_frames += 1
            out.append(Send(route.client, frame))

    def _forward(self, client: ClientLike, message: ForwardedMessage) -> RouterAction:
        ws = message.workspace_id
        ref = getattr(message, "client_message_id", None) or getattr(message, "request_id", None)
        owner = self._allowed(ws, client.sub)
        if owner is None:
            return SendError(client, ErrorCode.NOT_FOUND, "no such workspace", ws, ref)
        vm = self.vms.get(owner.vm_id)
        if vm is None:
            return SendError(client, ErrorCode.VM_OFFLINE, "the workspace's VM is offline", ws, ref)
        frame = encode_message(attrs.evolve(message, user_id=client.sub))
        if ref is not None:
            routes = vm.error_routes
            routes[(ws, ref)] = client
            routes.move_to_end((ws, ref))
            while len(routes) > ERROR_ROUTES:
                routes.popitem(last=False)
        session = getattr(message, "session_id", None)
        return Forward(client, vm, frame, ws, ref, message_type(message), session)

    def forward_failed(self, forward: Forward) -> list[RouterAction]:
        """The VM went away before it took a forwarded message: the client hears
        ``vm_offline`` once (a request may have been ended already, with its VM)."""
        if (
            forward.kind == ClientType.REQUEST
            and forward.ref is not None
            and self._settle((forward.workspace_id, forward.ref), forward.vm) is None
        ):
            return []
        return [
            SendError(
                forward.client,
                ErrorCode.VM_OFFLINE,
                "the workspace's VM went away",
                forward.workspace_id,
                forward.ref,
            )
        ]

    def forwarded(self, forward: Forward) -> list[RouterAction]:
        """The VM took a forwarded message."""
        self.stats.forwarded += 1
        if forward.kind != ClientType.INTERRUPT:
            return []
        # An interrupt settles nothing the VM reports back: it is audited as asked.
        event: dict[str, Any] = {"type": "audit", "workspaceId": forward.workspace_id}
        _add_session(event, forward.session_id)
        event.update(userId=forward.client.sub, action="interrupt", at=now_iso())
        return [Emit(event)]

    # -- VMs -----------------------------------------------------------------

    def vm_joined(self, vm: VmLike) -> list[RouterAction]:
        """Book a new VM connection; an older one of the same VM is replaced."""
        self.vm_peers.add(vm)
        self.stats.vm_connections += 1
        old = self.vms.get(vm.sub)
        if old is None:
            return []
        out: list[RouterAction] = [
            Close(old, CloseCode.POLICY, "replaced by a newer connection of this VM")
        ]
        self._vm_offline(old, out)
        return out

    def vm_left(self, vm: VmLike) -> list[RouterAction]:
        """Forget a closed VM connection."""
        self.vm_peers.discard(vm)
        out: list[RouterAction] = []
        self._vm_offline(vm, out)
        return out

    def _vm_offline(self, vm: VmLike, out: list[RouterAction]) -> None:
        if self.vms.get(vm.sub) is not vm:
            return
        del self.vms[vm.sub]
        self._fail_requests(vm, None, out)
        for owner in self.ownership.values():
            workspace = self.workspaces.get(owner.workspace_id)
            if owner.vm_id == vm.sub and workspace is not None:
                self._disconnect(workspace, out)
        out.append(Emit({"type": "vm_offline", "vmId": vm.sub}))
        log.info("vm offline", extra=vm.log_extra())

    def vm_frame(self, vm: VmLike, frame: str | bytes) -> list[RouterAction]:
        """One VM frame off the hot path: decoded whole, or dropped and counted."""
        out: list[RouterAction] = []
        key = "vm:other"
        try:
            if isinstance(frame, bytes):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "binary frames are not accepted")
            env = read_envelope(frame)
            # Known types only: a VM's made-up types must not grow the metrics.
            key = VM_IN_KEYS.get(env.type, key)
            self._vm_frame(vm, frame, env, out)
        except ProtocolError as exc:
            out.append(self._vm_drop(vm, exc))
        finally:
            self.stats.count_in(key, len(frame))
        return out

    def _vm_drop(self, vm: VmLike, exc: ProtocolError) -> RouterAction:
        """A VM frame that cannot be handled: counted, logged, and the VM told."""
        drops = self.stats.vm_drops
        drops[exc.reason] = drops.get(exc.reason, 0) + 1
        # A frame that is not the JSON it claims, or reads two ways, is a
        # broken or hostile VM; the rest (a race with a move) is routine.
        level = logging.WARNING if exc.reason in (BAD_JSON, REPEATED_KEY) else logging.INFO
        log.log(level, "vm frame dropped", extra=vm.log_extra(reason=exc.reason, error=exc.message))
        return SendError(vm, exc.code, exc.message, ref=exc.ref)

    def _vm_frame(self, vm: VmLike, frame: str, env: Envelope, out: list[RouterAction]) -> None:
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
            session_id = session_or_main(env.session_id)
            room = self.room(ws, session_id, out)
            if room is None:
                raise ProtocolError(
                    ErrorCode.TOO_LARGE, "too many sessions in this workspace", env.request_id
                )
            if kind == VmType.MESSAGES_SNAPSHOT:
                self.stats.snapshots += 1
                key = (ws, session_id)
                asked = self._snapshot_asked.get(key)
                if asked is not None and asked[0] == env.request_id:
                    del self._snapshot_asked[key]
                    self.stats.snapshot_latency.observe(self.clock() - asked[1])
                self.apply(room, room.vm_snapshot(env.request_id, env.seq, env.epoch, frame), out)
            elif kind == VmType.STATUS:
                status = structure(_body(env, frame), StatusMessage)
                vm.statuses.setdefault(ws, {})[session_id] = (status.status, status.detail)
                actions = room.vm_frame(env.seq, env.epoch, frame, status=status.status)
                self.apply(room, actions, out)
            elif kind == VmType.REQUEST_RESOLVED:
                resolved = structure(_body(env, frame), RequestResolved)
                fresh = env.epoch != room.epoch or env.seq > room.head
                self.apply(room, room.vm_frame(env.seq, env.epoch, frame), out)
                if fresh:
                    self._audit_resolution(resolved, out)
            else:
                self.apply(room, room.vm_frame(env.seq, env.epoch, frame), out)
        elif kind == VmType.HELLO:
            self._hello(vm, structure(_body(env, frame), Hello), out)
        elif kind == VmType.ERROR:
            self._vm_error(vm, structure(_body(env, frame), ErrorMessage), frame, out)
        elif kind == VmType.REPLY:
            self._reply(vm, structure(_body(env, frame), Reply), frame, out)
        elif kind == VmType.TERMINAL_OUTPUT:
            self._terminal_frame(vm, structure(_body(env, frame), TerminalOutput), frame, out)
        elif kind == VmType.TERMINAL_EXIT:
            self._terminal_frame(vm, structure(_body(env, frame), TerminalExit), frame, out)
        elif kind == VmType.AUTH:
            out.append(self.renew(vm, structure(_body(env, frame), VmAuth).token))
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}")

    def _hello(self, vm: VmLike, hello: Hello, out: list[RouterAction]) -> None:
        if hello.vm_id is not None and hello.vm_id != vm.sub:
            raise ProtocolError(ErrorCode.FORBIDDEN, "vmId does not match the token")
        logs: SessionLogs = {}
        statuses: SessionStatuses = {}
        for entry in hello.workspaces:
            session_id = session_or_main(entry.session_id)
            logs.setdefault(entry.workspace_id, {})[session_id] = (entry.epoch, entry.seq)
            # An extension of the contract's entry: the log's current status,
            # so subscribers hear the VM is back (too long a word is ignored).
            status, detail = entry.status, entry.status_detail
            if status is not None and 0 < len(status) <= MAX_STATUS_LENGTH:
                statuses.setdefault(entry.workspace_id, {})[session_id] = (
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
            extra=vm.log_extra(
                agentVersion=str(hello.agent_version)[:64],
                logs=sum(len(sessions) for sessions in logs.values()),
            ),
        )
        if first:
            out.append(Emit({"type": "vm_online", "vmId": vm.sub}))
        # Assignments first, so the VM knows a workspace before its snapshot request.
        owned = [o for o in self.ownership.values() if o.vm_id == vm.sub]
        for owner in owned:
            out.append(Send(vm, _assigned_frame(owner)))
        for owner in owned:
            workspace = self.workspaces.get(owner.workspace_id)
            if workspace is not None:
                self._connect(workspace, vm, out)
        self._release_stale_logs(vm, out)

    def _release_stale_logs(self, vm: VmLike, out: list[RouterAction]) -> None:
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
                out.append(Send(vm, _released_frame(workspace_id)))
                log.info(
                    "vm holds a workspace it does not own; released",
                    extra=vm.log_extra(workspaceId=workspace_id),
                )

    def _audit_resolution(self, resolved: RequestResolved, out: list[RouterAction]) -> None:
        """Audit a decision as the VM settled it (who answered, what was decided)."""
        action = _AUDITED_RESOLUTIONS.get(resolved.resolution)
        if action is None:
            return
        event: dict[str, Any] = {"type": "audit", "workspaceId": resolved.workspace_id}
        _add_session(event, resolved.session_id)
        if resolved.user_id is not None:
            event["userId"] = resolved.user_id
        event["action"] = action
        event["requestId"] = resolved.request_id
        event["resolution"] = str(resolved.resolution)
        if action == "permission_response":
            event["allow"] = resolved.resolution == Resolution.ALLOWED
        event["at"] = now_iso()
        out.append(Emit(event))

    def _vm_error(
        self, vm: VmLike, error: ErrorMessage, frame: str, out: list[RouterAction]
    ) -> None:
        workspace_id, ref = error.workspace_id, error.ref
        if ref is not None and workspace_id is not None:
            # An error about a request answers it: the client's slot is free again.
            self._settle((workspace_id, ref), vm)
            routed = vm.error_routes.get((workspace_id, ref))
            if routed is not None and not routed.closing:
                out.append(Send(routed, frame))
                return
        room = None
        if workspace_id is not None:
            room = self.find_room(workspace_id, session_or_main(error.session_id))
        if room is not None:
            owner = self.ownership.get(room.workspace_id)
            if owner is not None and owner.vm_id == vm.sub:
                for client in self._clients(room):
                    out.append(Send(client, frame))
                return
        log.info("vm error with no one to tell", extra=vm.log_extra(code=str(error.code)))

    def _clients(self, room: Room) -> list[ClientLike]:
        """The clients of a room (rooms key cursors by the client objects given them)."""
        clients: list[ClientKey] = room.clients
        return clients  # type: ignore[return-value]

    # -- ownership (control socket) --------------------------------------------

    def assign(self, owner: Ownership) -> list[RouterAction]:
        """One workspace to one VM (also a change of its users)."""
        out: list[RouterAction] = []
        old = self.ownership.get(owner.workspace_id)
        self.ownership[owner.workspace_id] = owner
        workspace = self.workspaces.get(owner.workspace_id)
        if old is not None and old.vm_id != owner.vm_id:
            old_vm = self.vms.get(old.vm_id)
            if old_vm is not None:
                self._fail_requests(old_vm, owner.workspace_id, out)
                old_vm.logs.pop(owner.workspace_id, None)
                old_vm.statuses.pop(owner.workspace_id, None)
                out.append(Send(old_vm, _released_frame(owner.workspace_id)))
            if workspace is not None:
                self._disconnect(workspace, out)
        vm = self.vms.get(owner.vm_id)
        if vm is not None and (old is None or old.vm_id != owner.vm_id or old.issue != owner.issue):
            out.append(Send(vm, _assigned_frame(owner)))
        if workspace is not None:
            if vm is not None and (old is None or old.vm_id != owner.vm_id):
                self._connect(workspace, vm, out)
            self._drop_unallowed(workspace, owner.user_ids, out)
        return out

    def release(self, workspace_id: str, *, tell_vm: bool = True) -> list[RouterAction]:
        """Forget a workspace: its VM is told, its clients are unsubscribed."""
        out: list[RouterAction] = []
        old = self.ownership.pop(workspace_id, None)
        if old is not None and tell_vm:
            vm = self.vms.get(old.vm_id)
            if vm is not None:
                self._fail_requests(vm, workspace_id, out)
                vm.logs.pop(workspace_id, None)
                vm.statuses.pop(workspace_id, None)
                out.append(Send(vm, _released_frame(workspace_id)))
        workspace = self.workspaces.pop(workspace_id, None)
        if workspace is not None:
            for key in [k for k in self._snapshot_asked if k[0] == workspace_id]:
                del self._snapshot_asked[key]
            told: set[ClientLike] = set()
            for room in workspace.rooms.values():
                for client in self._clients(room):
                    room.unsubscribe(client)
                    client.subscriptions.discard((workspace_id, room.session_id))
                    if client not in told:
                        told.add(client)
                        out.append(
                            SendError(
                                client,
                                ErrorCode.NOT_FOUND,
                                "the workspace was released",
                                workspace_id,
                            )
                        )
        return out

    def sync(self, owners: list[Ownership]) -> list[RouterAction]:
        """Replace the whole ownership table."""
        out: list[RouterAction] = []
        wanted = {o.workspace_id: o for o in owners}
        for workspace_id in list(self.ownership):
            if workspace_id not in wanted:
                out.extend(self.release(workspace_id))
        for owner in owners:
            out.extend(self.assign(owner))
        if not self.synced:
            # The table is authoritative from now on: VMs that said hello
            # before it came hear now about what they hold but do not own.
            self.synced = True
            for vm in list(self.vms.values()):
                self._release_stale_logs(vm, out)
        return out

    def _drop_unallowed(
        self, workspace: Workspace, user_ids: frozenset[str], out: list[RouterAction]
    ) -> None:
        ws = workspace.workspace_id
        told: set[ClientLike] = set()
        for room in workspace.rooms.values():
            for client in self._clients(room):
                if client.sub not in user_ids:
                    room.unsubscribe(client)
                    client.subscriptions.discard((ws, room.session_id))
                    if client not in told:
                        told.add(client)
                        out.append(SendError(client, ErrorCode.NOT_FOUND, "no such workspace", ws))

    def online_vm_events(self) -> list[dict[str, Any]]:
        """``vm_online`` for every VM online now (sent again after a ``sync``)."""
        return [{"type": "vm_online", "vmId": vm_id} for vm_id in sorted(self.vms)]


def _listed(
    vm: VmLike, workspace_id: str, session_id: str
) -> tuple[tuple[str, int] | None, tuple[str, str | None] | None]:
    """What the VM's ``hello`` (and its status frames since) said of one session."""
    log = vm.logs.get(workspace_id, {}).get(session_id)
    status = vm.statuses.get(workspace_id, {}).get(session_id)
    return log, status


def _body(env: Envelope, frame: str) -> Any:
    """The decoded frame: the slow path's, or a strict parse of the text."""
    return env.body if env.body is not None else loads(frame)


def _assigned_frame(owner: Ownership) -> str:
    # The issue goes to the VM as the control plane gave it.
    return dumps(
        {
            "type": RelayType.WORKSPACE_ASSIGNED,
            "workspaceId": owner.workspace_id,
            "issue": owner.issue,
        }
    )


def _released_frame(workspace_id: str) -> str:
    return encode_frame(WorkspaceReleased(workspace_id=workspace_id))


def _add_session(event: dict[str, Any], session_id: str | None) -> None:
    """An audit event names its session, except main (absent means main)."""
    session = written_session(session_id)
    if session is not None:
        event["sessionId"] = session


def now_iso() -> str:
    """Now, as the audit's ``at`` (ISO 8601 UTC, milliseconds)."""
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"

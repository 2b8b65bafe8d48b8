"""relayd.router: the routing rules as events in, actions out, with plain test doubles."""

from __future__ import annotations

import collections
import json
from typing import Any

from relayd.ratelimit import TokenBucket
from relayd.room import Wake
from relayd.router import (
    Close,
    Emit,
    Forward,
    Ownership,
    Router,
    RouterAction,
    Send,
    SendError,
)
from relayd.settings import Settings
from relayd.stats import Stats
from wire.envelope import vm_frame
from wire.protocol import CloseCode, ErrorCode, Scope
from wire.tokens import Claims, TokenVerifier


class Peer:
    """What the router needs of a peer, and nothing else (it never sends itself)."""

    closing = False

    def __init__(self, sub: str, scope: Scope) -> None:
        self.sub = sub
        self.scope = scope

    def log_extra(self, **more: Any) -> dict[str, Any]:
        return {"sub": self.sub, **more}

    def send_or_drop(self, frame: str) -> None:
        raise AssertionError("the router returns actions; it does not send")

    def send_error(
        self,
        code: ErrorCode,
        message: str,
        *,
        workspace_id: str | None = None,
        ref: str | None = None,
    ) -> None:
        raise AssertionError("the router returns actions; it does not send")

    def close(self, code: int, reason: str = "") -> None:
        raise AssertionError("the router returns actions; it does not close")

    def renew(self, claims: Claims) -> None:
        raise AssertionError("the router returns actions; it does not renew")


class Client(Peer):
    def __init__(self, sub: str) -> None:
        super().__init__(sub, Scope.CLIENT)
        self.subscriptions: set[tuple[str, str]] = set()
        self.bucket = TokenBucket(1000.0, 1000, 0.0)


class Vm(Peer):
    def __init__(self, sub: str) -> None:
        super().__init__(sub, Scope.VM)
        self.logs: dict[str, dict[str, tuple[str, int]]] = {}
        self.statuses: dict[str, dict[str, tuple[str, str | None]]] = {}
        self.hello_done = False
        self.error_routes: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()


def router() -> Router:
    return Router(Settings(), TokenVerifier({}, issuer="ffcloud"), Stats(), clock=lambda: 0.0)


def online(r: Router, vm_id: str, **logs: tuple[str, int]) -> Vm:
    vm = Vm(vm_id)
    assert r.vm_joined(vm) == []
    entries = [{"workspaceId": w, "epoch": e, "seq": s} for w, (e, s) in logs.items()]
    r.vm_frame(vm, json.dumps({"type": "hello", "vmId": vm_id, "workspaces": entries}))
    return vm


def frames_to(actions: list[RouterAction], peer: Peer) -> list[dict[str, Any]]:
    return [json.loads(a.frame) for a in actions if isinstance(a, Send) and a.peer is peer]


def errors_to(actions: list[RouterAction], peer: Peer) -> list[str]:
    return [str(a.code) for a in actions if isinstance(a, SendError) and a.peer is peer]


def test_a_client_message_goes_to_the_owner_vm_only_with_the_senders_id() -> None:
    r = router()
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {})
    r.ownership["w2"] = Ownership("w2", "vm2", frozenset({"u2"}), {})
    vm1, vm2 = online(r, "vm1"), online(r, "vm2")
    client = Client("u1")
    r.client_joined(client)
    frame = '{"type":"interrupt","workspaceId":"w1","userId":"u2"}'
    (forward,) = r.client_frame(client, frame)
    assert isinstance(forward, Forward)
    assert forward.vm is vm1
    assert forward.vm is not vm2
    assert json.loads(forward.frame) == {"type": "interrupt", "workspaceId": "w1", "userId": "u1"}
    # Once the VM took it, an interrupt is audited as asked.
    (audit,) = r.forwarded(forward)
    assert isinstance(audit, Emit)
    assert (audit.event["action"], audit.event["userId"]) == ("interrupt", "u1")
    assert r.stats.forwarded == 1
    # Not allowed on w2, and a workspace that does not exist: the same not_found.
    for ws in ("w2", "nope"):
        actions = r.client_frame(client, json.dumps({"type": "interrupt", "workspaceId": ws}))
        assert errors_to(actions, client) == ["not_found"]


def test_a_vm_offline_and_a_bad_frame_get_their_errors() -> None:
    r = router()
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {})
    client = Client("u1")
    message = {"type": "user_message", "workspaceId": "w1", "clientMessageId": "c", "text": "x"}
    (error,) = r.client_frame(client, json.dumps(message))
    assert isinstance(error, SendError)
    assert (error.code, error.ref) == (ErrorCode.VM_OFFLINE, "c")
    assert errors_to(r.client_frame(client, '{"type":"user_message",x}'), client) == ["bad_request"]
    assert errors_to(r.client_frame(client, b"\x00"), client) == ["bad_request"]


def test_hello_checks_and_assignments() -> None:
    r = router()
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {"url": "u"})
    vm = Vm("vm1")
    r.vm_joined(vm)
    # Before hello, a sequenced frame is refused.
    early = vm_frame("claude_message", "w1", seq=1, epoch="e1", raw_fields={"data": "{}"})
    assert errors_to(r.vm_frame(vm, early), vm) == ["bad_request"]
    assert errors_to(r.vm_frame(vm, '{"type":"hello","vmId":"vm2"}'), vm) == ["forbidden"]
    actions = r.vm_frame(
        vm, '{"type":"hello","vmId":"vm1","workspaces":[{"workspaceId":"w1","epoch":"e1","seq":0}]}'
    )
    assert Emit({"type": "vm_online", "vmId": "vm1"}) in actions
    assert frames_to(actions, vm) == [
        {"type": "workspace_assigned", "workspaceId": "w1", "issue": {"url": "u"}}
    ]
    assert vm.hello_done
    assert vm.logs == {"w1": {"main": ("e1", 0)}}
    # A frame for a workspace this VM does not own.
    other = vm_frame("claude_message", "w9", seq=1, epoch="e1", raw_fields={"data": "{}"})
    assert errors_to(r.vm_frame(vm, other), vm) == ["forbidden"]
    assert r.stats.vm_drops == {"bad_request": 1, "forbidden": 2}


def test_a_decision_is_audited_from_the_vms_request_resolved() -> None:
    r = router()
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1", "u2"}), {})
    vm = online(r, "vm1", w1=("e1", 0))
    resolved = vm_frame(
        "request_resolved",
        "w1",
        seq=1,
        epoch="e1",
        request_id="p1",
        fields={"resolution": "allowed", "userId": "u2"},
    )
    audits = [a.event for a in r.vm_frame(vm, resolved) if isinstance(a, Emit)]
    assert [(e["action"], e["userId"], e["requestId"], e["allow"]) for e in audits] == [
        ("permission_response", "u2", "p1", True)
    ]
    # The same frame again is a duplicate: no second entry.
    assert [a for a in r.vm_frame(vm, resolved) if isinstance(a, Emit)] == []
    # A cancellation is no one's decision.
    cancelled = vm_frame(
        "request_resolved",
        "w1",
        seq=2,
        epoch="e1",
        request_id="q",
        fields={"resolution": "cancelled"},
    )
    assert [a for a in r.vm_frame(vm, cancelled) if isinstance(a, Emit)] == []


def test_a_subscriber_is_woken_by_its_workspace_only() -> None:
    r = router()
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {})
    r.ownership["w2"] = Ownership("w2", "vm1", frozenset({"u1"}), {})
    vm = online(r, "vm1", w1=("e1", 0), w2=("e2", 0))
    client = Client("u1")
    r.client_joined(client)
    subscribed = r.client_frame(
        client, '{"type":"subscribe","workspaceId":"w1","lastSeq":0,"epoch":"e1"}'
    )
    (cursor,) = [c for a in subscribed if isinstance(a, Wake) for c in a.cursors]
    assert client.subscriptions == {("w1", "main")}
    # The writer reads what the cursor has (subscribed); it then waits for more.
    entries, _chars, _actions = cursor.room.read(cursor, 1 << 20)
    assert json.loads(entries[0])["type"] == "subscribed"  # type: ignore[arg-type]
    assert not cursor.awake
    # A status frame for w2 (the full path) wakes no one; one for w1 wakes the client.
    for ws, epoch, woken in (("w2", "e2", False), ("w1", "e1", True)):
        status = vm_frame("status", ws, seq=1, epoch=epoch, fields={"status": "idle"})
        wakes = [a for a in r.vm_frame(vm, status) if isinstance(a, Wake)]
        assert bool([c for w in wakes for c in w.cursors if c.client is client]) is woken


def test_release_disconnect_and_a_replaced_vm() -> None:
    r = router()
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {})
    vm = online(r, "vm1", w1=("e1", 0))
    client = Client("u1")
    r.client_joined(client)
    r.client_frame(client, '{"type":"subscribe","workspaceId":"w1","lastSeq":0,"epoch":"e1"}')
    actions = r.release("w1")
    assert frames_to(actions, vm) == [{"type": "workspace_released", "workspaceId": "w1"}]
    assert errors_to(actions, client) == ["not_found"]
    assert client.subscriptions == set()
    (close,) = r.disconnect(user_id="u1")
    assert (close.peer, close.code) == (client, CloseCode.CUT_OFF)
    newer = Vm("vm1")
    actions = r.vm_joined(newer)
    assert Close(vm, CloseCode.POLICY, "replaced by a newer connection of this VM") in actions
    assert Emit({"type": "vm_offline", "vmId": "vm1"}) in actions
    assert "vm1" not in r.vms


def test_auth_with_a_bad_token_is_refused() -> None:
    r = router()
    client = Client("u1")
    (action,) = r.client_frame(client, '{"type":"auth","token":"nonsense"}')
    assert isinstance(action, SendError)
    assert action.code == ErrorCode.FORBIDDEN


# -- sessions ------------------------------------------------------------------


def test_an_audit_names_its_session_except_main() -> None:
    r = router()
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {})
    vm = online(r, "vm1", w1=("e1", 0))
    client = Client("u1")
    r.client_joined(client)
    audits: list[dict[str, Any]] = []
    for session in (None, "main", "side-2"):
        message: dict[str, Any] = {"type": "interrupt", "workspaceId": "w1"}
        if session is not None:
            message["sessionId"] = session
        (forward,) = r.client_frame(client, json.dumps(message))
        assert isinstance(forward, Forward)
        audits += [a.event for a in r.forwarded(forward) if isinstance(a, Emit)]
    resolved = vm_frame(
        "request_resolved",
        "w1",
        session_id="side-2",
        seq=1,
        epoch="e1",
        request_id="p1",
        fields={"resolution": "denied", "userId": "u1"},
    )
    audits += [a.event for a in r.vm_frame(vm, resolved) if isinstance(a, Emit)]
    assert [(e["action"], e.get("sessionId", "absent")) for e in audits] == [
        ("interrupt", "absent"),
        ("interrupt", "absent"),
        ("interrupt", "side-2"),
        ("permission_response", "side-2"),
    ]


def hello(r: Router, vm: Vm, entries: list[dict[str, Any]]) -> list[RouterAction]:
    return r.vm_frame(vm, json.dumps({"type": "hello", "vmId": vm.sub, "workspaces": entries}))


def session_frame(session: str, seq: int, kind: str = "claude_message", **fields: Any) -> str:
    return vm_frame(kind, "w1", session_id=session, seq=seq, epoch="e1", fields=fields)


def test_a_session_s_frames_reach_its_subscribers_only() -> None:
    r = router()
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {})
    vm = online(r, "vm1", w1=("e1", 0))
    main_reader, s2_reader = Client("u1"), Client("u1")
    for client, session in ((main_reader, None), (s2_reader, "s_2")):
        r.client_joined(client)
        message: dict[str, Any] = {"type": "subscribe", "workspaceId": "w1"}
        if session:
            message["sessionId"] = session
        actions = r.client_frame(client, json.dumps(message))
        if session:
            # A session relayd never heard of: its room waits for the VM's snapshot.
            assert frames_to(actions, vm) == [
                {"type": "snapshot_request", "workspaceId": "w1", "sessionId": "s_2",
                 "requestId": frames_to(actions, vm)[0]["requestId"]}
            ]  # fmt: skip
    assert main_reader.subscriptions == {("w1", "main")}
    assert s2_reader.subscriptions == {("w1", "s_2")}
    woken = [c for a in r.vm_frame(vm, session_frame("s_2", 1)) if isinstance(a, Wake)
             for c in a.cursors]  # fmt: skip
    assert [c.client for c in woken] == []  # it waits for its snapshot: nothing to wake yet
    room = r.find_room("w1", "s_2")
    assert room is not None
    assert (room.session_id, room.head) == ("s_2", 1)
    main = r.find_room("w1")
    assert main is not None
    assert main.head == 0  # main's log never saw it
    assert r.room_count() == 2


def test_status_only_is_the_workspace_s_and_a_bad_session_is_refused() -> None:
    r = router()
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {})
    vm = online(r, "vm1", w1=("e1", 0))
    client = Client("u1")
    r.client_joined(client)
    r.client_frame(
        client, '{"type":"subscribe","workspaceId":"w1","sessionId":"s_2","statusOnly":true}'
    )
    assert client.subscriptions == {("w1", "main")}
    bad = '{"type":"subscribe","workspaceId":"w1","sessionId":"../x"}'
    assert errors_to(r.client_frame(client, bad), client) == ["bad_request"]
    frame = '{"type":"status","workspaceId":"w1","sessionId":"a b","seq":1,"epoch":"e1"}'
    assert errors_to(r.vm_frame(vm, frame), vm) == ["bad_request"]
    assert r.room_count() == 1


def test_hello_makes_rooms_for_the_listed_sessions_of_a_followed_workspace() -> None:
    r = router()
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {})
    client = Client("u1")
    r.client_joined(client)
    r.client_frame(client, '{"type":"subscribe","workspaceId":"w1","statusOnly":true}')
    vm = Vm("vm1")
    r.vm_joined(vm)
    actions = hello(
        r,
        vm,
        [
            {"workspaceId": "w1", "epoch": "e1", "seq": 3, "status": "idle"},
            {"workspaceId": "w1", "sessionId": "s_2", "epoch": "e2", "seq": 5,
             "status": "waiting_for_input"},
        ],
    )  # fmt: skip
    assert vm.logs == {"w1": {"main": ("e1", 3), "s_2": ("e2", 5)}}
    # The list hears about the waiting session, and so does the control plane, once.
    statuses = [a.event for a in actions if isinstance(a, Emit) and a.event["type"] != "vm_online"]
    assert statuses == [
        {"type": "workspace_status", "workspaceId": "w1", "status": "waiting_for_input"}
    ]
    room = r.find_room("w1", "s_2")
    assert room is not None
    assert (room.epoch, room.head, room.status) == ("e2", 5, "waiting_for_input")


def test_the_sessions_of_a_workspace_are_bounded() -> None:
    r = Router(
        Settings(max_sessions_per_workspace=3),
        TokenVerifier({}, issuer="ffcloud"),
        Stats(),
        clock=lambda: 0.0,
    )
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {})
    vm = online(r, "vm1", w1=("e1", 0))
    client = Client("u1")
    r.client_joined(client)
    for session in ("s_a", "s_b"):
        r.client_frame(
            client, json.dumps({"type": "subscribe", "workspaceId": "w1", "sessionId": session})
        )
    assert r.room_count() == 3
    # All three in use: one more is refused, to the client and to the VM.
    more = '{"type":"subscribe","workspaceId":"w1","sessionId":"s_c"}'
    assert errors_to(r.client_frame(client, more), client) == ["too_large"]
    assert errors_to(r.vm_frame(vm, session_frame("s_c", 1)), vm) == ["too_large"]
    # A session no one follows makes room for a new one (the one of least
    # concern: a stopped one before one that waits).
    r.client_frame(client, '{"type":"unsubscribe","workspaceId":"w1","sessionId":"s_a"}')
    r.client_frame(client, '{"type":"unsubscribe","workspaceId":"w1","sessionId":"s_b"}')
    r.vm_frame(vm, session_frame("s_a", 1, "status", status="waiting_for_input"))
    r.vm_frame(vm, session_frame("s_b", 1, "status", status="stopped"))
    assert r.vm_frame(vm, session_frame("s_c", 1)) == []
    assert r.find_room("w1", "s_b") is None
    assert r.find_room("w1", "s_a") is not None
    assert r.room_count() == 3


def test_releasing_a_workspace_ends_every_session_once_per_client() -> None:
    r = router()
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {})
    online(r, "vm1", w1=("e1", 0))
    client = Client("u1")
    r.client_joined(client)
    for session in ("main", "s_2", "s_3"):
        r.client_frame(
            client, json.dumps({"type": "subscribe", "workspaceId": "w1", "sessionId": session})
        )
    assert len(client.subscriptions) == 3
    actions = r.release("w1")
    assert errors_to(actions, client) == ["not_found"]
    assert client.subscriptions == set()
    assert r.room_count() == 0

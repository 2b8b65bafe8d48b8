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

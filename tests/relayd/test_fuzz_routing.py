"""Fuzzing relayd's routing with hostile text from clients and VMs.

Hypothesis drives one relay (no sockets) with arbitrary frames: valid
messages with mutated fields, random Unicode with surrogate escapes,
repeated keys (plain and escaped), deep nesting, huge numbers, wrong types
in every field. After every frame these must hold:

* no exception escapes the relay, and every frame it queues can be sent
  (UTF-8 can encode it);
* a frame relayd passes on from a VM reaches only subscribers of a workspace
  that VM owns, and of the session it names (or of the workspace's status,
  for a ``status``), read the way a browser reads it (the last of a repeated key);
* a client's message reaches only the VM that owns its workspace, from a
  user allowed on it, with that user's id;
* every client message gets its answer (an ``error``, ``subscribed``, or the
  forwarded message) or its documented silence (``unsubscribe``, a good
  ``auth``);
* a ``reply`` reaches only the connection whose ``request`` is in flight
  under its key, once; a terminal's frames only the connection whose
  ``terminal_open`` booked it; no connection ever has more than
  ``--max-requests-in-flight`` requests in flight, and when the VMs go away
  every request and terminal is over, each still in flight told once.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from relayd.outbox import Outbox
from relayd.ratelimit import TokenBucket
from relayd.relay import ClientPeer, Ownership, Relay, VmPeer
from relayd.settings import Settings
from tests.support.stubpeer import drain, frames_of
from wire.envelope import vm_frame
from wire.messages import Subscribe
from wire.protocol import Scope
from wire.tokens import Claims, TokenVerifier

#: workspace -> (owner VM, users allowed)
OWNERS: dict[str, tuple[str, frozenset[str]]] = {
    "w1": ("vm1", frozenset({"u1", "u2"})),
    "w2": ("vm2", frozenset({"u1"})),
    "w3": ("vm1", frozenset({"u3"})),
}
LOGS = {"vm1": {"w1": ("e1", 0), "w3": ("e3", 0)}, "vm2": {"w2": ("e2", 0)}}
#: client name -> (user, workspaces it subscribes to)
CLIENTS = {"a": ("u1", ("w1", "w2")), "b": ("u2", ("w1",)), "c": ("u3", ("w3",)), "d": ("u4", ())}
WORKSPACES = ["w1", "w2", "w3", "nope", ""]
#: A second session of w1 (its log is in vm1's hello), which client "a" follows too.
S2 = "s_2"
#: What a frame may name as its session: none (main), main spelled out, another, a bad one.
SESSIONS: list[Any] = [None, None, "main", S2, S2, "s_9", "a b", 5]


_NO_SOCKET: Any = SimpleNamespace(on_blocked=None)  # never used without Peer.run()


def _claims(sub: str, scope: Scope) -> Claims:
    return Claims(sub, scope, time.time() + 3600, time.time(), "jti", "ffcloud")


def client_peer(sub: str) -> ClientPeer:
    """A real client peer of relayd with no socket behind it (its outbox is read here)."""
    return ClientPeer(
        _NO_SOCKET,
        _claims(sub, Scope.CLIENT),
        bucket=TokenBucket(1e9, 10**9, 0.0),
        outbox=Outbox(1 << 20, 1 << 40),
        ping_interval=0,
        close_timeout=1,
        token_leeway=0,
    )


def vm_peer(sub: str) -> VmPeer:
    """A real VM peer of relayd with no socket behind it."""
    return VmPeer(
        _NO_SOCKET,
        _claims(sub, Scope.VM),
        outbox=Outbox(1 << 20, 1 << 40),
        ping_interval=0,
        close_timeout=1,
        token_leeway=0,
    )


class World:
    """A relay with two VMs and four clients, their subscriptions made."""

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("max_requests_in_flight", MAX_IN_FLIGHT)
        self.relay = Relay(
            Settings(client_rate=1e9, client_burst=10**9, ping_interval=0, **settings),
            TokenVerifier({}, issuer="ffcloud"),
        )
        for ws, (vm_id, users) in OWNERS.items():
            self.relay.ownership[ws] = Ownership(ws, vm_id, users, {})
        self.vms: dict[str, VmPeer] = {}
        for vm_id, logs in LOGS.items():
            vm = vm_peer(vm_id)
            self.relay.vm_joined(vm)
            entries = [{"workspaceId": w, "epoch": e, "seq": s} for w, (e, s) in logs.items()]
            if vm_id == "vm1":
                entries.append({"workspaceId": "w1", "sessionId": S2, "epoch": "e1", "seq": 0})
            self.relay.vm_frames(
                vm, [json.dumps({"type": "hello", "vmId": vm_id, "workspaces": entries})]
            )
            self.vms[vm_id] = vm
        self.clients: dict[str, ClientPeer] = {}
        #: The model: requests in flight (as the VMs got them) and terminals
        #: open (as their connections heard), by key, with their connection.
        self.asked: dict[tuple[str, str], ClientPeer] = {}
        self.open_terminals: dict[tuple[str, str], ClientPeer] = {}
        for name, (user, subscriptions) in CLIENTS.items():
            client = client_peer(user)
            self.relay.client_joined(client)
            for ws in subscriptions:
                epoch = LOGS[OWNERS[ws][0]][ws][0]
                self.relay._subscribe(client, Subscribe(workspace_id=ws, last_seq=0, epoch=epoch))
            if name == "a":
                self.relay._subscribe(
                    client, Subscribe(workspace_id="w1", session_id=S2, last_seq=0, epoch="e1")
                )
            self.clients[name] = client
        self.taken()

    def taken(self) -> dict[int, list[str]]:
        """Frames each peer got since the last call, by peer id."""
        out: dict[int, list[str]] = {}
        for p in [*self.vms.values(), *self.clients.values()]:
            out[id(p)] = frames_of(drain(self.relay, p, 1 << 40)) if not p.closing else []
            for frame in out[id(p)]:
                frame.encode()  # what the socket will do: it must not raise
        return out


# -- frames --------------------------------------------------------------------

surrogate = st.integers(0xD800, 0xDFFF).map(lambda n: f"\\u{n:04x}")
odd_text = st.text(max_size=20)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False)
    | odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=8,
)
ids = st.sampled_from(["c1", "q1", "p1", "r1", "x" * 201]) | odd_text
#: Few request and terminal ids, so that replies and terminal frames hit booked ones.
request_ids = st.sampled_from(["r1", "r1", "r2", "r3", "x" * 201]) | odd_text
terminal_ids = st.sampled_from(["t1", "t1", "t2"]) | odd_text
#: relayd tags connections c1, c2, ... in the order they first ask.
connection_ids = st.sampled_from(["c1", "c2", "c3", "c4", "c9"]) | odd_text
OPS = st.sampled_from(["changes", "terminal_open", "terminal_open", "diff"]) | odd_text
MAX_IN_FLIGHT = 2
workspace_ids = st.sampled_from(WORKSPACES)


@st.composite
def client_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A client message as the protocol has it (before mutation)."""
    ws = draw(workspace_ids)
    kind = draw(
        st.sampled_from(
            [
                "subscribe",
                "unsubscribe",
                "user_message",
                "question_response",
                "permission_response",
                "interrupt",
                "auth",
                "request",
                "request",
                "terminal_input",
                "terminal_resize",
                "terminal_close",
            ]
        )
    )
    body: dict[str, Any] = {"type": kind, "workspaceId": ws}
    if kind == "subscribe":
        body.update(lastSeq=draw(st.integers(0, 3)), epoch=draw(st.sampled_from(["e1", "e2"])))
    elif kind == "user_message":
        body.update(clientMessageId=draw(ids), text=draw(odd_text))
    elif kind == "question_response":
        body.update(requestId=draw(ids), answers={draw(odd_text): draw(odd_text)})
    elif kind == "permission_response":
        body.update(requestId=draw(ids), allow=draw(st.booleans()))
    elif kind == "auth":
        body = {"type": "auth", "token": draw(odd_text)}
    elif kind == "request":
        body.update(requestId=draw(request_ids), op=draw(OPS))
        if draw(st.booleans()):
            body["args"] = draw(json_values)
        if draw(st.integers(0, 3)) == 0:
            body["connectionId"] = draw(connection_ids)  # a client's own: dropped
    elif kind.startswith("terminal_"):
        body["terminalId"] = draw(terminal_ids)
        if kind == "terminal_input":
            body["data"] = draw(odd_text)
        elif kind == "terminal_resize":
            body.update(cols=draw(st.integers(-1, 1001)), rows=draw(st.integers(0, 50)))
    if kind == "subscribe" and draw(st.integers(0, 3)) == 0:
        body["statusOnly"] = True
    session = draw(st.sampled_from(SESSIONS))
    if session is not None and kind != "auth":
        body["sessionId"] = session
    if draw(st.booleans()):
        body["userId"] = draw(st.sampled_from(["u1", "u2", "u3", "admin"]))
    return body


VM_TYPES = [
    "claude_message",
    "user_message",
    "status",
    "user_question",
    "permission_request",
    "request_resolved",
    "messages_snapshot",
    "error",
    "hello",
    "auth",
    "reply",
    "reply",
    "reply",
    "terminal_output",
    "terminal_exit",
]


#: Stands for "the next seq of this workspace", filled in when the frame is sent.
NEXT_SEQ = 777777
EPOCHS = {"w1": "e1", "w2": "e2", "w3": "e3"}


@st.composite
def vm_frames(draw: st.DrawFn, vm_id: str) -> str:
    """A VM frame written as vmagent writes it (envelope first), before mutation:
    mostly for a workspace of this VM, in its epoch, with the next seq."""
    kind = draw(st.sampled_from(VM_TYPES))
    own = sorted(LOGS[vm_id])
    ws = draw(st.sampled_from(own) | workspace_ids)
    if kind == "hello":
        entries = [
            {"workspaceId": draw(workspace_ids), "epoch": "e1", "seq": draw(st.integers(0, 3))}
            for _ in range(draw(st.integers(0, 2)))
        ]
        return json.dumps(
            {"type": "hello", "vmId": draw(st.sampled_from(["vm1", "vm2"])), "workspaces": entries}
        )
    if kind == "auth":
        return json.dumps({"type": "auth", "token": draw(odd_text)})
    if kind == "reply":
        reply: dict[str, Any] = {"type": "reply", "workspaceId": ws, "requestId": draw(request_ids)}
        if draw(st.booleans()):
            reply["connectionId"] = draw(connection_ids)
        if draw(st.integers(0, 3)) == 0:
            reply.update(ok=False, error={"code": "not_found", "message": draw(odd_text)})
        else:
            result = draw(st.fixed_dictionaries({"terminalId": terminal_ids}) | json_values)
            reply.update(ok=True, result=result)
        return json.dumps(reply)
    if kind in ("terminal_output", "terminal_exit"):
        term: dict[str, Any] = {
            "type": kind,
            "workspaceId": ws,
            "terminalId": draw(terminal_ids),
            "connectionId": draw(connection_ids),
        }
        if kind == "terminal_output":
            term["data"] = draw(odd_text)
        else:
            term["reason"] = "exited"
        return json.dumps(term)
    if kind == "error":
        return json.dumps(
            {
                "type": "error",
                "workspaceId": ws,
                "code": "not_found",
                "message": "m",
                "ref": draw(ids),
            }
        )
    fields: dict[str, Any] = {}
    request_id = None
    if kind == "status":
        fields["status"] = draw(st.sampled_from(["idle", "running"]))
    elif kind in ("user_question", "permission_request", "request_resolved", "messages_snapshot"):
        request_id = draw(ids)
        if kind == "request_resolved":
            fields["resolution"] = draw(st.sampled_from(["answered", "allowed", "denied"]))
            fields["userId"] = draw(st.sampled_from(["u1", "u2", "u3"]))
        if kind == "messages_snapshot":
            fields.update(status="idle", messages=[], pending=[])
    epoch = draw(st.sampled_from([EPOCHS.get(ws, "e1")] * 3 + ["e1", "e2", "e3"]))
    session = draw(st.sampled_from(SESSIONS))
    if not isinstance(session, str) or " " in session:
        if session is not None:
            fields["sessionId"] = session  # vm_frame writes only good ones: put it further on
        session = None
    return vm_frame(
        kind,
        ws,
        session_id=session,
        seq=draw(st.sampled_from([NEXT_SEQ, NEXT_SEQ, NEXT_SEQ, 1, 2, 3])),
        epoch=epoch,
        request_id=request_id,
        fields=fields,
        raw_fields={"data": json.dumps({"type": "assistant", "text": draw(odd_text)})},
    )


@st.composite
def mutated(draw: st.DrawFn, base: str) -> str:
    """``base`` as it came, or broken in one of the ways an attacker would try."""
    how = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9]))
    if how == 0:
        return base
    obj = json.loads(base)
    if how == 9:  # the same frame aimed at another workspace further on
        ws = draw(st.sampled_from(sorted(EPOCHS)))
        key = draw(st.sampled_from(['"workspaceId"', '"workspac\\u0065Id"']))
        return base[:-1] + f',{key}:"{ws}","epoch":"{EPOCHS[ws]}"}}'
    if how == 1:  # a field of the wrong type
        key = draw(st.sampled_from(sorted(obj)))
        obj[key] = draw(json_values)
        return json.dumps(obj, ensure_ascii=draw(st.booleans()))
    if how == 2:  # a repeated key, plain or escaped, at the end
        key = draw(
            st.sampled_from(
                ["type", "workspaceId", "sessionId", "seq", "epoch", "requestId", "userId"]
            )
        )
        spelled = draw(
            st.sampled_from([json.dumps(key), '"' + key[:-1] + f"\\u{ord(key[-1]):04x}" + '"'])
        )
        value = json.dumps(draw(json_values | workspace_ids))
        return base[:-1] + f",{spelled}:{value}}}"
    if how == 3:  # a lone surrogate escape in a string
        return base.replace('"', '"' + draw(surrogate), 1 + 2 * draw(st.integers(0, 4)))
    if how == 4:  # deep nesting (past every parser's limit: test_hostile.py's corpus)
        depth = draw(st.integers(10, 400) | st.integers(5000, 6000))
        return base[:-1] + ',"deep":' + "[" * depth + "]" * depth + "}"
    if how == 5:  # a huge number
        return base[:-1] + ',"seq":' + "9" * draw(st.integers(17, 400)) + "}"
    if how == 6:  # cut short or with garbage behind
        cut = draw(st.integers(0, len(base)))
        return base[:cut] + draw(st.sampled_from(["", "x", ",x}", "}}", '"']))
    if how == 7:  # the head kept, the body not JSON
        return base.split(",", 1)[0] + ",x}"
    return draw(odd_text)  # anything at all


@st.composite
def exchanges(draw: st.DrawFn) -> list[tuple[str, str]]:
    """A request from a client allowed on the workspace, then its owner VM's
    reply (perhaps to another id, another workspace, from the other VM) and
    perhaps terminal frames after it: the routes booked and then hit."""
    name = draw(st.sampled_from(["a", "b", "c"]))
    ws = draw(st.sampled_from(CLIENTS[name][1]))
    rid = draw(st.sampled_from(["r1", "r2", "r3", "r4", "r5"]) | request_ids)
    op = draw(st.sampled_from(["terminal_open"]) | OPS)
    request = {"type": "request", "workspaceId": ws, "requestId": rid, "op": op}
    vm_id = draw(st.sampled_from([OWNERS[ws][0]] * 3 + sorted(LOGS)))
    terminal = draw(terminal_ids)
    answer: dict[str, Any] = {
        "type": "reply",
        "workspaceId": draw(st.sampled_from([ws, ws, ws, "w1", "w3"])),
        "requestId": draw(st.sampled_from([rid, rid, rid]) | request_ids),
        "connectionId": draw(connection_ids),
        "ok": True,
        "result": {"terminalId": terminal},
    }
    out = [(name, json.dumps(request))]
    if draw(st.integers(0, 4)):  # else left unanswered: the limit must hold
        out.append((vm_id, json.dumps(answer)))
    for kind in draw(st.lists(st.sampled_from(["terminal_output", "terminal_exit"]), max_size=2)):
        frame = {
            "type": kind,
            "workspaceId": ws,
            "terminalId": draw(st.sampled_from([terminal, terminal]) | terminal_ids),
            # Mostly the asking connection's id (filled in when it is sent).
            "connectionId": draw(st.sampled_from([f"@{name}"] * 3) | connection_ids),
            "data" if kind == "terminal_output" else "reason": "x",
        }
        out.append((draw(st.sampled_from([vm_id, "vm1", "vm2"])), json.dumps(frame)))
    return out


@st.composite
def events(draw: st.DrawFn) -> tuple[str, str]:
    """``(sender, frame)``: a client (a-d) or a VM (vm1, vm2)."""
    # Half the frames as they came: requests must meet their replies often.
    intact = draw(st.booleans())
    if draw(st.booleans()):
        sender = draw(st.sampled_from(sorted(CLIENTS)))
        message = json.dumps(draw(client_messages()))
        return sender, message if intact else draw(mutated(message))
    vm_id = draw(st.sampled_from(sorted(LOGS)))
    frame = draw(vm_frames(vm_id))
    return vm_id, frame if intact else draw(mutated(frame))


# -- invariants ----------------------------------------------------------------

ENVELOPE = ("type", "workspaceId", "sessionId", "seq", "epoch", "requestId")


def _reads_two_ways(frame: str) -> bool:
    """True if a parser keeping the first of a repeated envelope key reads this
    frame otherwise than one keeping the last (as browsers do)."""
    tops: list[list[tuple[str, Any]]] = []

    def keep(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        tops.append(pairs)
        return dict(pairs)

    json.loads(frame, object_pairs_hook=keep)
    first: dict[str, Any] = {}
    for key, value in tops[-1]:  # the outermost object is finished last
        first.setdefault(key, value)
    last = dict(tops[-1])
    return any(first.get(k) != last.get(k) for k in ENVELOPE)


def _follows_status(world: World, client: ClientPeer, workspace_id: str) -> bool:
    """True if the client has a statusOnly subscription to the workspace (in main's room)."""
    room = world.relay.router.find_room(workspace_id)
    cursor = room.cursor(client) if room is not None else None
    return cursor is not None and cursor.status_only


def _check_vm_event(world: World, vm_id: str, got: dict[int, list[str]]) -> None:
    owned = {ws for ws, (owner, _) in OWNERS.items() if owner == vm_id}
    for client in world.clients.values():
        for frame in got[id(client)]:
            obj = json.loads(frame)  # what a browser reads: the last of a repeated key
            assert not _reads_two_ways(frame), frame
            ws = obj.get("workspaceId")
            assert ws in owned, (vm_id, frame)
            assert client.sub in OWNERS[ws][1], (client.sub, frame)
            if obj.get("type") == "reply":
                key = (ws, obj["requestId"])
                # Only to the connection that asked, only once.
                assert world.asked.pop(key, None) is client, (client.sub, frame)
                event("a reply delivered")
                result = obj.get("result")
                if isinstance(result, dict) and isinstance(result.get("terminalId"), str):
                    route = world.relay.router.terminals.get((ws, result["terminalId"]))
                    if route is not None and route.client is client:
                        world.open_terminals[(ws, result["terminalId"])] = client
                continue
            if obj.get("type") in ("terminal_output", "terminal_exit"):
                key = (ws, obj["terminalId"])
                assert world.open_terminals.get(key) is client, (client.sub, frame)
                assert obj["connectionId"] == world.relay.router.connection_id(client), frame
                event("a terminal frame delivered")
                if obj["type"] == "terminal_exit":
                    del world.open_terminals[key]
                continue
            key = (ws, obj.get("sessionId", "main"))
            if obj.get("type") == "status" and _follows_status(world, client, ws):
                continue  # the list's: the most urgent session's status, whichever it is
            if obj.get("type") != "error":
                assert key in client.subscriptions, (client.sub, frame)
    for other_id, vm in world.vms.items():
        if other_id != vm_id:
            assert got[id(vm)] == [], got[id(vm)]


def _check_client_event(world: World, name: str, frame: str, got: dict[int, list[str]]) -> None:
    client = world.clients[name]
    forwarded = 0
    for vm_id, vm in world.vms.items():
        for out in got[id(vm)]:
            obj = json.loads(out)
            ws = obj["workspaceId"]
            owner, users = OWNERS[ws]
            assert owner == vm_id, (vm_id, out)
            assert client.sub in users, (client.sub, out)
            if obj["type"] != "snapshot_request":
                assert obj["userId"] == client.sub, out
                forwarded += 1
            if obj["type"] == "request":
                assert obj["connectionId"] == world.relay.router.connection_id(client), out
                world.asked[(ws, obj["requestId"])] = client
    answers = got[id(client)]
    for other in world.clients.values():
        if other is not client:
            assert got[id(other)] == [], (name, frame, got[id(other)])
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        obj = None
    kind = obj.get("type") if isinstance(obj, dict) else None
    silent = kind == "unsubscribe" or (kind == "auth" and not answers)
    if not silent:
        assert answers or forwarded, (name, frame)
    if kind == "unsubscribe" and answers:
        assert all(json.loads(a)["type"] == "error" for a in answers), answers


def _check_in_flight(world: World) -> None:
    """The router's bookings are the model's; no connection over its limit."""
    router = world.relay.router
    # A request ends only by its reply or error (no clock runs here, no VM leaves).
    for key in list(world.asked):
        route = router.in_flight.get(key)
        if route is None:
            del world.asked[key]  # ended by the VM's error about it
        else:
            assert route.client is world.asked[key], key
    assert len(router.in_flight) == len(world.asked)
    for client in world.clients.values():
        assert router.in_flight.count(client) <= MAX_IN_FLIGHT
        if router.in_flight.count(client) == MAX_IN_FLIGHT:
            event("a connection at its limit")


def _check_vms_gone(world: World) -> None:
    """Both VMs leave: every request and terminal is over, each told once."""
    waiting = dict(world.asked)
    terminals = dict(world.open_terminals)
    for vm in world.vms.values():
        world.relay.vm_left(vm)
    got = world.taken()
    for client in world.clients.values():
        ended = [json.loads(f) for f in got[id(client)]]
        refs = [(e["workspaceId"], e["ref"]) for e in ended if e.get("code") == "vm_offline"]
        mine = [k for k, c in waiting.items() if c is client]
        assert sorted(refs) == sorted(mine), (refs, mine)
        if mine:
            event("requests in flight when the VMs left")
        exits = [(e["workspaceId"], e["terminalId"]) for e in ended if e["type"] == "terminal_exit"]
        assert sorted(exits) == sorted(k for k, c in terminals.items() if c is client)
        assert world.relay.router.in_flight.count(client) == 0
    assert len(world.relay.router.in_flight) == 0
    assert len(world.relay.router.terminals) == 0


async def _run(world: World, script: list[tuple[str, str]]) -> None:
    for sender, frame in script:
        if sender in world.clients:
            await world.relay._client_frame(world.clients[sender], frame)
            _check_client_event(world, sender, frame, world.taken())
        else:
            if str(NEXT_SEQ) in frame:
                # The next seq of the workspace a browser would read the frame as for.
                try:
                    obj = json.loads(frame)
                    room = world.relay.router.find_room(
                        obj.get("workspaceId"), obj.get("sessionId", "main")
                    )
                except (ValueError, RecursionError, AttributeError, TypeError):
                    room = None
                if room is not None:
                    frame = frame.replace(str(NEXT_SEQ), str(room.head + 1))
            for name, client in world.clients.items():
                frame = frame.replace(f'"@{name}"', f'"{world.relay.router.connection_id(client)}"')
            world.relay.vm_frames(world.vms[sender], [frame])
            _check_vm_event(world, sender, world.taken())
        _check_in_flight(world)
    _check_vms_gone(world)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=st.lists(
        st.lists(events(), min_size=1, max_size=3) | exchanges(), min_size=1, max_size=8
    ).map(lambda parts: [e for part in parts for e in part])
)
def test_no_hostile_frame_breaks_the_routing(script: list[tuple[str, str]]) -> None:
    async def main() -> None:
        await _run(World(), script)

    trio.run(main)

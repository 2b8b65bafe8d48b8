"""relayd.router: a client's ``request`` reaches the owner VM tagged with its
connection, and the VM's ``reply`` reaches that connection alone, bounded."""

from __future__ import annotations

import json
import math
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.router import Forward, Ownership, Router, SendError
from relayd.settings import Settings
from relayd.stats import Stats
from tests.relayd.test_fuzz_routing import World
from tests.relayd.test_router import Client, Vm, errors_to, frames_to, online
from wire.protocol import ErrorCode
from wire.tokens import TokenVerifier


def router(**settings: Any) -> Router:
    return Router(
        Settings(**settings), TokenVerifier({}, issuer="ffcloud"), Stats(), clock=lambda: 0.0
    )


def request(ws: str, rid: str, op: str = "changes", **extra: Any) -> str:
    return json.dumps({"type": "request", "workspaceId": ws, "requestId": rid, "op": op, **extra})


def reply(ws: str, rid: str, **body: Any) -> str:
    return json.dumps({"type": "reply", "workspaceId": ws, "requestId": rid, "ok": True, **body})


def setup(**settings: Any) -> tuple[Router, Vm, Client, Client]:
    r = router(**settings)
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1", "u2"}), {})
    vm = online(r, "vm1")
    a, b = Client("u1"), Client("u2")
    r.client_joined(a)
    r.client_joined(b)
    return r, vm, a, b


def test_a_reply_goes_to_the_asking_connection_only() -> None:
    r, vm, a, b = setup()
    sent = request("w1", "r1", args={"path": "x"}, userId="evil", connectionId="evil")
    (forward,) = r.client_frame(a, sent)
    assert isinstance(forward, Forward)
    assert forward.vm is vm
    body = json.loads(forward.frame)
    assert body["userId"] == "u1"
    assert body["connectionId"] == r.connection_id(a) != "evil"
    assert body["args"] == {"path": "x"}
    # Another connection of another user gets its own tag.
    assert r.connection_id(b) != r.connection_id(a)
    answer = reply("w1", "r1", result={"files": []})
    actions = r.vm_frame(vm, answer)
    assert frames_to(actions, a) == [json.loads(answer)]
    assert frames_to(actions, b) == []
    assert (r.stats.requests, r.stats.replies, r.stats.stale_replies) == (1, 1, 0)
    # Answered once: the same reply again is stale, dropped and counted.
    assert r.vm_frame(vm, answer) == []
    assert r.stats.stale_replies == 1


def test_a_reply_from_another_vm_or_for_an_unknown_request_is_dropped() -> None:
    r, vm, a, _b = setup()
    r.ownership["w2"] = Ownership("w2", "vm2", frozenset({"u1"}), {})
    other = online(r, "vm2")
    r.client_frame(a, request("w1", "r1"))
    assert r.vm_frame(other, reply("w1", "r1")) == []
    assert r.vm_frame(vm, reply("w1", "nope")) == []
    assert r.stats.stale_replies == 2
    # The right VM still answers it.
    assert len(frames_to(r.vm_frame(vm, reply("w1", "r1")), a)) == 1


def test_requests_in_flight_are_bounded_per_connection() -> None:
    r, vm, a, b = setup(max_requests_in_flight=2)
    for rid in ("r1", "r2"):
        assert isinstance(r.client_frame(a, request("w1", rid))[0], Forward)
    assert errors_to(r.client_frame(a, request("w1", "r3")), a) == [ErrorCode.RATE_LIMITED]
    # Another connection has its own budget; an id in flight is not reusable.
    assert isinstance(r.client_frame(b, request("w1", "r4"))[0], Forward)
    assert errors_to(r.client_frame(b, request("w1", "r1")), b) == [ErrorCode.BAD_REQUEST]
    # A reply, and an error about a request, each free a slot.
    r.vm_frame(vm, reply("w1", "r1"))
    err = {"type": "error", "workspaceId": "w1", "code": "not_found", "message": "x", "ref": "r2"}
    assert frames_to(r.vm_frame(vm, json.dumps(err)), a) == [err]
    for rid in ("r5", "r6"):
        assert isinstance(r.client_frame(a, request("w1", rid))[0], Forward)


def test_only_allowed_users_may_ask_and_an_offline_vm_ends_what_it_owes() -> None:
    r, vm, a, _b = setup()
    stranger = Client("u9")
    r.client_joined(stranger)
    assert errors_to(r.client_frame(stranger, request("w1", "r1")), stranger) == ["not_found"]
    r.client_frame(a, request("w1", "r1"))
    out = r.vm_left(vm)
    errors = [x for x in out if isinstance(x, SendError) and x.peer is a]
    assert [(e.code, e.ref) for e in errors] == [(ErrorCode.VM_OFFLINE, "r1")]
    assert errors_to(r.client_frame(a, request("w1", "r2")), a) == [ErrorCode.VM_OFFLINE]
    assert len(r.in_flight) == 0


def test_a_closed_connection_forgets_its_requests() -> None:
    r, vm, a, _b = setup(max_requests_in_flight=1)
    r.client_frame(a, request("w1", "r1"))
    r.client_left(a)
    assert len(r.in_flight) == 0
    assert r.vm_frame(vm, reply("w1", "r1")) == []
    assert r.stats.stale_replies == 1


def test_a_bad_reply_is_dropped_and_the_vm_told() -> None:
    r, vm, a, _b = setup()
    r.client_frame(a, request("w1", "r1"))
    bad = json.dumps({"type": "reply", "workspaceId": "w1", "requestId": "r1", "ok": False})
    out = r.vm_frame(vm, bad)
    assert errors_to(out, vm) == [ErrorCode.BAD_REQUEST]
    assert frames_to(out, a) == []


@settings(deadline=None)  # a loaded machine is not a failure
@given(
    st.dictionaries(
        st.sampled_from(["workspaceId", "requestId", "op", "args", "connectionId", "userId"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=300), st.lists(st.integers())),
    )
)
def test_any_request_gets_a_forward_or_one_error(fields: dict[str, Any]) -> None:
    r, _vm, a, _b = setup()
    actions = r.client_frame(a, json.dumps({"type": "request", **fields}))
    assert len(actions) == 1
    (action,) = actions
    assert isinstance(action, Forward | SendError)
    if isinstance(action, Forward):
        assert json.loads(action.frame)["connectionId"] == r.connection_id(a)


def test_a_vm_gone_before_it_took_the_request_is_told_once() -> None:
    r, vm, a, _b = setup()
    (forward,) = r.client_frame(a, request("w1", "r1"))
    assert isinstance(forward, Forward)
    told = r.vm_left(vm)
    assert [x.ref for x in told if isinstance(x, SendError) and x.peer is a] == ["r1"]
    assert r.forward_failed(forward) == []
    # A plain message has no booking: its sender hears it once, here.
    r.ownership["w1"] = Ownership("w1", "vm2", frozenset({"u1"}), {})
    online(r, "vm2")
    (plain,) = r.client_frame(a, json.dumps({"type": "interrupt", "workspaceId": "w1"}))
    assert isinstance(plain, Forward)
    assert [x.code for x in r.forward_failed(plain) if isinstance(x, SendError)] == [
        ErrorCode.VM_OFFLINE
    ]


def test_a_request_the_vm_never_answers_ends_after_the_timeout() -> None:
    clock = [0.0]
    r = Router(
        Settings(request_timeout=5.0, max_requests_in_flight=1),
        TokenVerifier({}, issuer="ffcloud"),
        Stats(),
        clock=lambda: clock[0],
    )
    r.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1"}), {})
    vm = online(r, "vm1")
    a = Client("u1")
    r.client_joined(a)
    r.client_frame(a, request("w1", "r1"))
    clock[0] = 3.0
    r.client_frame(a, request("w1", "r0"))  # over the limit: refused, not timed
    assert r.next_request_due() == 5.0
    assert r.expire_requests(4.9) == []
    ended = r.expire_requests(5.0)
    assert [(e.code, e.ref, e.workspace_id) for e in ended if isinstance(e, SendError)] == [
        (ErrorCode.VM_OFFLINE, "r1", "w1")
    ]
    assert "in time" in ended[0].message  # type: ignore[union-attr]
    assert r.in_flight.count(a) == 0
    assert r.stats.request_timeouts == 1
    # The late reply is stale; the slot is free for the next request.
    assert r.vm_frame(vm, reply("w1", "r1")) == []
    assert r.stats.stale_replies == 1
    assert isinstance(r.client_frame(a, request("w1", "r2"))[0], Forward)
    # An answered request is never ended by its old deadline.
    r.vm_frame(vm, reply("w1", "r2"))
    r.client_frame(a, request("w1", "r2"))
    clock[0] = 9.0
    r.vm_frame(vm, reply("w1", "r2"))
    assert r.expire_requests(100.0) == []
    assert r.stats.request_timeouts == 1


def test_request_timeout_zero_never_ends_a_request() -> None:
    r, _vm, a, _b = setup(request_timeout=0.0)
    r.client_frame(a, request("w1", "r1"))
    assert r.next_request_due() == math.inf
    assert r.expire_requests(1e12) == []
    assert r.in_flight.count(a) == 1


async def test_relayd_ends_an_unanswered_request_on_its_timer(autojump_clock: Any) -> None:
    world = World(request_timeout=30.0)
    client = world.clients["a"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(world.relay.timers.run)
        await world.relay._client_frame(client, request("w1", "r1"))
        world.taken()
        await trio.sleep(29.9)
        assert world.taken()[id(client)] == []
        await trio.sleep(0.2)
        (ended,) = [json.loads(f) for f in world.taken()[id(client)]]
        assert (ended["type"], ended["code"], ended["ref"]) == ("error", "vm_offline", "r1")
        assert world.relay.router.in_flight.count(client) == 0
        nursery.cancel_scope.cancel()

"""Fuzzing relayd's control socket: any line from the control plane.

Hypothesis sends lines that are not JSON, not objects, or requests of every
type with wrong types, surrogate escapes, huge values and repeated keys in
every field, to a relay with VMs and clients (no sockets: the real socket is
tested once below). After every line:

* :func:`relayd.control.handle_line` returns exactly one reply, with the
  request's id (null when it has no usable one), ``ok``, and a code and a
  message when it failed;
* the reply, the events after it, and every frame queued for a VM or a
  client can be written (UTF-8 encodes them), as the socket writer does;
* a refused request leaves the ownership table as it was.
"""

from __future__ import annotations

import json
from typing import Any

import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from relayd.control import MAX_ID, handle_line
from relayd.control_events import ControlConnection
from tests.relayd.test_fuzz_routing import World
from tests.support.relayd import Relayd

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TYPES = ["hello", "sync", "assign", "release", "disconnect", "moved", "revoke", "stats"]
surrogates = st.sampled_from(["\ud800", "a\udfffb", "\udc00"])
odd_text = st.text(max_size=12) | surrogates | st.sampled_from(["", "x" * (MAX_ID + 1)])
values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**30, -1, 2**63])
    | st.floats(allow_nan=False)
    | odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=6,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Three times in four a good value: a request must get far to find a fault."""
    return st.integers(0, 3).flatmap(lambda n: good if n else bad)


workspace_ids = mostly(st.sampled_from(["w1", "w2", "w3", "new"]), odd_text)
vm_ids = mostly(st.sampled_from(["vm1", "vm2", "vm9"]), odd_text)
user_lists = mostly(
    st.lists(mostly(st.sampled_from(["u1", "u2", "u3"]), odd_text), max_size=3), values
)


@st.composite
def entries(draw: st.DrawFn) -> Any:
    """A workspace entry of ``sync`` or the body of ``assign``, maybe malformed."""
    entry: dict[str, Any] = {
        "workspaceId": draw(workspace_ids),
        "vmId": draw(vm_ids),
        "userIds": draw(user_lists),
    }
    if draw(st.booleans()):
        entry["issue"] = draw(values)
    if draw(st.integers(0, 3)) == 0:
        del entry[draw(st.sampled_from(sorted(entry)))]
    return entry if draw(st.integers(0, 9)) else draw(values)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request as the control plane writes one, then mutated."""
    kind = draw(mostly(st.sampled_from(TYPES), odd_text | values))
    body: dict[str, Any] = {"type": kind}
    if draw(st.integers(0, 3)):
        body["id"] = draw(st.sampled_from(["r1", 7]) | values)
    if kind == "sync":
        body["workspaces"] = draw(st.lists(entries(), max_size=4) | values)
    elif kind == "assign":
        entry = draw(entries())
        body.update(entry if isinstance(entry, dict) else {"workspaceId": entry})
    elif kind == "release":
        body["workspaceId"] = draw(workspace_ids | values)
    elif kind == "disconnect":
        body[draw(st.sampled_from(["userId", "vmId"]))] = draw(
            st.sampled_from(["u1", "vm1"]) | values
        )
        if draw(st.booleans()):
            body[draw(st.sampled_from(["userId", "vmId"]))] = draw(values)
    elif kind == "moved":
        body["workspaceIds"] = draw(st.lists(workspace_ids, max_size=3) | values)
    elif kind == "revoke":
        for name in draw(st.lists(st.sampled_from(["users", "sessions", "jtis", "x"]), max_size=3)):
            body[name] = draw(values)
    if draw(st.integers(0, 4)) == 0:
        body[draw(odd_text)] = draw(values)
    return body


def as_line(body: dict[str, Any], repeat: str | None) -> bytes:
    """The request's text, escapes as written (surrogates too), a key repeated if asked."""
    text = json.dumps(body)
    if repeat is not None:
        text = text[:-1] + ("," if body else "") + f'{json.dumps(repeat)}:"w1"}}'
    return text.encode()


#: Lines no request makes (kept out of the strategy's repr: some are huge).
SPECIAL = [
    b"[" * 100_000,
    b'{"type":"hello","id":' + b"9" * 5000 + b"}",
    b'{"type":"hello","id":1e999}',
    b'{"type":"hello","id":NaN}',
    b"\xff\xfe{}",
    b"null",
    b'"hello"',
]
lines = st.one_of(
    st.tuples(requests(), st.none() | st.sampled_from(["type", "workspaceId", "id"])).map(
        lambda r: as_line(*r)
    ),
    st.binary(max_size=60),
    st.integers(0, len(SPECIAL) - 1).map(SPECIAL.__getitem__),
)


def written(conn: ControlConnection) -> list[dict[str, Any]]:
    """What the socket writer would send now, as it sends it (UTF-8)."""
    text = "".join(conn.outbox.take(1 << 40)).encode().decode()
    return [json.loads(line) for line in text.splitlines()]


@FUZZ
@given(st.lists(lines, min_size=1, max_size=4))
# A request id with a lone surrogate was echoed into a line UTF-8 cannot write.
@example([b'{"id":"\\ud800","type":"hello"}'])
@example([b'{"id":"r","type":"assign","workspaceId":"w9","vmId":"vm1","userIds":["\\udfff"]}'])
async def test_every_line_gets_one_reply_that_can_be_written(batch: list[bytes]) -> None:
    world = World()
    listener = ControlConnection(10_000, 1 << 30, "other")
    world.relay.control.attach(listener)  # events for every control plane
    for line in batch:
        before = dict(world.relay.ownership)
        reply, events = handle_line(world.relay, line)
        conn = ControlConnection(10_000, 1 << 30, "ctl")
        conn.send(reply)
        for event in events:
            conn.send(event)
        sent = written(conn)
        assert sent[0] == json.loads(json.dumps(reply)), "the reply is written first"
        assert set(reply) >= {"id", "ok"}
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):
            request = None
        request_id = request.get("id") if isinstance(request, dict) else None
        if isinstance(request_id, (str, int)):
            assert reply["id"] == request_id
        else:
            assert reply["id"] is None
        if reply["ok"] is False:
            assert set(reply["error"]) == {"code", "message"}
            assert reply["error"]["code"]
            assert reply["error"]["message"]
            assert events == []
            assert world.relay.ownership == before, "a refused request changed the table"
        else:
            assert reply["ok"] is True
        written(listener)
        world.taken()  # every frame for a peer encodes


async def test_a_line_utf8_cannot_write_gets_its_reply_and_relayd_lives(relay: Relayd) -> None:
    with trio.fail_after(20):
        ctl = relay.control
        await ctl.send_line(b'{"id": "\\ud800", "type": "hello"}')
        reply = await ctl.next_reply()
        assert reply["ok"] is True
        assert reply["id"] == "\ud800"
        await ctl.send_line(
            b'{"id": "a", "type": "assign", "workspaceId": "w\\udfff",'
            b' "vmId": "vm1", "userIds": ["u\\ud800"], "issue": {"t": "\\udc00"}}'
        )
        assert (await ctl.next_reply())["ok"] is True
        assert (await ctl.request("stats"))["workspaces"] == 1

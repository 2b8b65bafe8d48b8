"""Fuzzing the control plane's reading of relayd's events (docs/protocol.md section 5).

relayd is trusted, but what it reports comes from VMs and clients. Hypothesis
sends the coordinator ``audit``, ``workspace_status``, ``vm_online`` and
``vm_offline`` events with odd values in every field (wrong types, huge
numbers, surrogates, huge strings, times no clock holds), and the link's
reader arbitrary lines. What must hold:

* the coordinator handles every event without an exception (one would be
  logged and the event lost);
* an audit event naming a workspace and an action is stored, whatever its
  other fields hold, with its ``sessionId`` when that is a session id other
  than main (else as main); a workspace no event names is unchanged;
* the link's reader skips a line it cannot read and stays up.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from controlplane import store
from controlplane.coordinator import Coordinator
from controlplane.db import Database
from controlplane.issues import FetchedIssue, IssueRef
from controlplane.relaylink import RelayLink
from wire.protocol import is_session_id

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class World:
    """A database with a VM and two workspaces: one the events aim at, one they never name."""

    def __init__(self, path: Path) -> None:
        self.db = Database.open(f"sqlite:///{path / 'cp.db'}")

        def setup(c: Any) -> tuple[str, str, str]:
            user = store.add_user(c, "alice", "x")
            vm = store.add_vm(c, "vm-a", "static")
            ref = IssueRef("o", "r", 7)
            target = store.add_workspace(c, user.id, ref, FetchedIssue(title="t"))
            bystander = store.add_workspace(c, user.id, ref, FetchedIssue(title="t"))
            return vm.id, target.id, bystander.id

        self.vm_id, self.target, self.bystander = self.db.run_sync(setup)
        self.coordinator = Coordinator(self.db, interval=3600)

    def state_of(self, workspace_id: str) -> list[Any]:
        found = self.db.run_sync(lambda c: store.get_workspace(c, workspace_id))
        audit = self.db.run_sync(lambda c: store.list_audit(c, workspace_id, 10_000))
        return [found, audit]


@pytest.fixture
def world() -> Iterator[World]:
    with tempfile.TemporaryDirectory() as path:
        world = World(Path(path))
        yield world
        world.db.close()


odd_text = st.text(max_size=20) | st.sampled_from(["\ud800", "a\udfffb", "", "\x00", "x" * 10_000])
values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 10**12, 2**63, 1e308, float("inf"), float("-inf")])
    | st.floats(allow_nan=True)
    | odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=5,
)
times = st.one_of(
    values,
    st.sampled_from(["2026-12-01T09:00:00Z", "2026-12-01T09:00:00+14:00", "9999-12-31T23:59:59"]),
    st.datetimes().map(lambda d: d.isoformat()),
)


@st.composite
def events(draw: st.DrawFn, world: World) -> dict[str, Any]:
    kind = draw(st.sampled_from(["audit", "workspace_status", "vm_online", "vm_offline"]) | values)
    ids = st.sampled_from([world.target, world.target, "nope"]) | odd_text | values
    body: dict[str, Any] = {"type": kind}
    if kind == "audit":
        body.update(
            workspaceId=draw(ids),
            action=draw(st.sampled_from(["user_message", "permission_response"]) | values),
            userId=draw(st.just("u1") | values),
            requestId=draw(st.just("r1") | values),
            at=draw(times),
        )
        if draw(st.booleans()):
            body["sessionId"] = draw(st.sampled_from(["side-2", "main", "-", "a b"]) | values)
        if draw(st.booleans()):
            body["allow"] = draw(values)
        if draw(st.booleans()):
            body["detail"] = draw(values)
    elif kind == "workspace_status":
        body.update(
            workspaceId=draw(ids), status=draw(st.sampled_from(["idle", "running"]) | values)
        )
    else:
        body["vmId"] = draw(st.sampled_from([world.vm_id, "vm-x"]) | odd_text | values)
    if draw(st.integers(0, 4)) == 0:
        del body[draw(st.sampled_from(sorted(body)))]
    return body


@FUZZ
@given(data=st.data())
# A huge integer time: int / 1000 raised OverflowError, and the audit was lost.
@example(data=None)
async def test_any_event_is_handled(world: World, data: Any) -> None:
    bystander = world.state_of(world.bystander)
    if data is None:
        event = {
            "type": "audit",
            "workspaceId": world.target,
            "action": "user_message",
            "at": 10**400,
        }
    else:
        event = data.draw(events(world))
    before = len(world.state_of(world.target)[1])
    await world.coordinator.on_event(event)  # an exception fails the test
    after = len(world.state_of(world.target)[1])
    action = event.get("action")
    names_target = event.get("type") == "audit" and event.get("workspaceId") == world.target
    if names_target and isinstance(action, str) and action:
        assert after == before + 1, event
        # Its session as sent when that is one; main (None) when absent, main or malformed.
        session = event.get("sessionId")
        wanted = session if is_session_id(session) and session != "main" else None
        assert world.state_of(world.target)[1][-1].session_id == wanted, event
    else:
        assert after == before, event
    assert world.state_of(world.bystander) == bystander


lines = st.one_of(
    st.binary(max_size=80),
    values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"[" * 100_000, b'{"type":' * 30_000, b"\xff\xfe", b'{"id":"x","ok":true}']),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(lines, max_size=5))
# Deep nesting: json.loads raised RecursionError, which broke the link.
@example([b"[" * 100_000])
async def test_the_link_reads_past_any_line(batch: list[bytes]) -> None:
    marker = {"type": "vm_online", "vmId": "marker"}
    marked = trio.Event()

    async def on_event(event: dict[str, Any]) -> None:
        if event == marker:
            marked.set()

    link = RelayLink(Path("/nonexistent"), on_event=on_event, on_connect=lambda _: _noop())
    relay_side, our_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link._consume_events)
        nursery.start_soon(link._read, our_side)
        for line in batch:
            await relay_side.send_all(line.replace(b"\n", b" ") + b"\n")
        await relay_side.send_all(json.dumps(marker).encode() + b"\n")
        with trio.fail_after(5):
            await marked.wait()  # every line before it was read past
        nursery.cancel_scope.cancel()


async def _noop() -> None:
    return None

"""Several sessions per workspace through a real relayd over loopback.

Each session is its own log: two stream at once, each gapless, to two
subscribers; a resume or a resnapshot of one does not disturb the other; a
client naming no session gets main; the list (statusOnly) and the control
plane see the most urgent session's status; offline and back online are told
per session.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from tests.relayd.fakevm import FakeVm
from tests.support.relayd import Relayd, recv_json, send_json

S2 = "s_" + "2" * 32


@contextlib.asynccontextmanager
async def vm_with_sessions(
    relay: Relayd,
    logs: dict[tuple[str, str], tuple[str, int]],
    statuses: dict[tuple[str, str], str] | None = None,
) -> AsyncIterator[FakeVm]:
    async with relay.connect_vm("vm1") as ws:
        vm = FakeVm(ws, "vm1")
        await vm.hello_sessions(logs, statuses)
        await relay.control.next_event("vm_online", lambda e: e["vmId"] == "vm1")
        yield vm


async def subscribe(ws: WebSocketConnection, session: str | None = None, **fields: Any) -> None:
    message: dict[str, Any] = {"type": "subscribe", "workspaceId": "w1", **fields}
    if session is not None:
        message["sessionId"] = session
    await send_json(ws, message)


async def snapshot_requests(vm: FakeVm, count: int) -> dict[str | None, str]:
    """The next ``count`` snapshot requests, by the session they name."""
    asked: dict[str | None, str] = {}
    for _ in range(count):
        request = await vm.expect("snapshot_request")
        assert request["workspaceId"] == "w1"
        asked[request.get("sessionId")] = request["requestId"]
    return asked


class Stream:
    """What one connection got, per session, checked as it arrives."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.last: dict[str | None, int] = {}
        self.relays: dict[str | None, list[dict[str, Any]]] = {}

    async def take(self, want: dict[str | None, int]) -> None:
        """Read until each session reached the seq in ``want``: every sequenced
        frame of a session must be one above the one before it."""
        while any(self.last.get(s, -1) < seq for s, seq in want.items()):
            msg = await recv_json(self.ws)
            session = msg.get("sessionId")
            if msg["type"] in ("subscribed", "messages_snapshot") or "seq" not in msg:
                self.relays.setdefault(session, []).append(msg)
                if msg["type"] == "messages_snapshot":
                    self.last[session] = msg["seq"]
                continue
            assert msg["seq"] == self.last[session] + 1, (session, msg["seq"], self.last)
            self.last[session] = msg["seq"]


async def test_two_sessions_stream_at_once_each_gapless_to_two_subscribers(relay: Relayd) -> None:
    with trio.fail_after(30):
        await relay.control.assign("w1", "vm1", ["u1", "u2"])
        logs = {("w1", "main"): ("e1", 0), ("w1", S2): ("e2", 0)}
        async with (
            vm_with_sessions(relay, logs) as vm,
            relay.connect_client("u1") as a,
            relay.connect_client("u2") as b,
        ):
            await vm.expect("workspace_assigned")
            for ws in (a, b):
                await subscribe(ws)
                await subscribe(ws, S2)
            # One snapshot request per session, shared by both subscribers; the
            # second session's names it.
            asked = await snapshot_requests(vm, 2)
            assert set(asked) == {None, S2}
            await vm.snapshot("w1", asked[None])
            await vm.snapshot("w1", asked[S2], session=S2)
            # Both sessions at once, in an order of their own, some frames in one write.
            order = [None] * 300 + [S2] * 300
            random.Random(15).shuffle(order)
            for session in order:
                await vm.ws.send_message(vm.frame("w1", session=session))
            streams = [Stream(a), Stream(b)]
            for stream in streams:
                await stream.take({None: 300, S2: 300})
                for session in (None, S2):
                    subscribed, snap = stream.relays[session]
                    assert subscribed["type"] == "subscribed"
                    assert subscribed.get("sessionId") == session
                    assert subscribed["epoch"] == ("e1" if session is None else "e2")
                    assert (snap["type"], snap["seq"]) == ("messages_snapshot", 0)


async def test_a_resume_and_a_resnapshot_of_one_session_do_not_disturb_the_other(
    relay: Relayd,
) -> None:
    with trio.fail_after(30):
        await relay.control.assign("w1", "vm1", ["u1"])
        logs = {("w1", "main"): ("e1", 0), ("w1", S2): ("e2", 0)}
        async with vm_with_sessions(relay, logs) as vm, relay.connect_client("u1") as ws:
            await vm.stream("w1", 5)
            await vm.stream("w1", 5, session=S2)
            await subscribe(ws, lastSeq=0, epoch="e1")
            await subscribe(ws, S2, lastSeq=0, epoch="e2")
            stream = Stream(ws)
            stream.last = {None: 0, S2: 0}
            await stream.take({None: 5, S2: 5})
            assert [m["mode"] for m in stream.relays[None]] == ["replay"]
            assert [m["mode"] for m in stream.relays[S2]] == ["replay"]
            # Resume the second session from seq 2 while main streams on.
            await subscribe(ws, S2, lastSeq=2, epoch="e2")
            await vm.stream("w1", 3)
            stream.last[S2] = 2
            await stream.take({None: 8, S2: 5})
            assert [m["mode"] for m in stream.relays[S2]] == ["replay", "replay"]
            # A gap in the second session: its readers get a fresh snapshot; main goes on.
            vm.seq[f"w1/{S2}"] = 9
            await vm.stream("w1", 1, session=S2)
            request = await vm.expect("snapshot_request")
            assert request["sessionId"] == S2
            await vm.stream("w1", 4)
            await vm.snapshot("w1", request["requestId"], session=S2)
            await vm.stream("w1", 2, session=S2)
            await stream.take({None: 12, S2: 12})
            assert [m.get("mode", m["type"]) for m in stream.relays[S2]][2:] == [
                "snapshot",
                "messages_snapshot",
            ]
            # Main never heard of any of it: one subscribed, no snapshot, nothing skipped.
            assert [m["mode"] for m in stream.relays[None]] == ["replay"]
            # And a new connection resumes each session where it left off.
        now = {("w1", "main"): ("e1", 12), ("w1", S2): ("e2", 12)}
        async with vm_with_sessions(relay, now) as vm, relay.connect_client("u1") as again:
            await subscribe(again, lastSeq=10, epoch="e1")
            await subscribe(again, S2, lastSeq=11, epoch="e2")
            resumed = Stream(again)
            resumed.last = {None: 10, S2: 11}
            await vm.stream("w1", 1)
            await vm.stream("w1", 1, session=S2)
            await resumed.take({None: 13, S2: 13})
            assert [m["mode"] for m in resumed.relays[None] + resumed.relays[S2]] == [
                "replay",
                "replay",
            ]


async def test_a_client_naming_no_session_gets_main(relay: Relayd) -> None:
    with trio.fail_after(30):
        await relay.control.assign("w1", "vm1", ["u1"])
        logs = {("w1", "main"): ("e1", 0), ("w1", S2): ("e2", 0)}
        async with vm_with_sessions(relay, logs) as vm, relay.connect_client("u1") as ws:
            await vm.expect("workspace_assigned")
            await subscribe(ws, lastSeq=0, epoch="e1")
            assert await recv_json(ws) == {
                "type": "subscribed",
                "workspaceId": "w1",
                "epoch": "e1",
                "mode": "replay",
            }
            await vm.stream("w1", 2, session=S2)
            await vm.stream("w1", 1)
            got = await recv_json(ws)
            assert (got["seq"], "sessionId" in got) == (1, False)
            # Messages without a session go to the VM without one; with one, with it;
            # "main" spelled out is main.
            for session in (None, S2, "main"):
                message: dict[str, Any] = {"type": "interrupt", "workspaceId": "w1"}
                if session is not None:
                    message["sessionId"] = session
                await send_json(ws, message)
                forwarded = await vm.expect("interrupt")
                assert forwarded.get("sessionId") == (S2 if session == S2 else None)
            # A bad session id is the client's error, and goes nowhere.
            await send_json(ws, {"type": "interrupt", "workspaceId": "w1", "sessionId": "a b"})
            error = await recv_json(ws)
            assert (error["type"], error["code"]) == ("error", "bad_request")
            assert "sessionId" in error["message"]


async def test_the_list_and_the_control_plane_see_the_most_urgent_session(relay: Relayd) -> None:
    with trio.fail_after(30):
        await relay.control.assign("w1", "vm1", ["u1"])
        logs = {("w1", "main"): ("e1", 0), ("w1", S2): ("e2", 0)}
        statuses = {("w1", "main"): "idle", ("w1", S2): "idle"}
        async with relay.connect_client("u1") as ws, relay.connect_client("u1") as full:
            async with vm_with_sessions(relay, logs, statuses) as vm:
                # statusOnly is the workspace's: a sessionId on it is ignored.
                await subscribe(ws, S2, statusOnly=True)
                assert (await recv_json(ws))["mode"] == "status"
                assert (await recv_json(ws))["status"] == "idle"
                await subscribe(full, S2, lastSeq=0, epoch="e2")
                assert (await recv_json(full))["sessionId"] == S2
                await vm.status("w1", "waiting_for_input", session=S2)
                got = await recv_json(ws)
                assert (got["sessionId"], got["status"], got["seq"]) == (
                    S2,
                    "waiting_for_input",
                    1,
                )
                event = await relay.control.next_event(
                    "workspace_status", lambda e: e["status"] == "waiting_for_input"
                )
                assert event == {
                    "type": "workspace_status",
                    "workspaceId": "w1",
                    "status": "waiting_for_input",
                }
                # main running is less urgent: the list hears nothing new.
                await vm.status("w1", "running")
                await vm.status("w1", "idle", session=S2)
                got = await recv_json(ws)
                assert ("sessionId" in got, got["status"]) == (False, "running")
                assert (await recv_json(full))["seq"] == 1
                assert (await recv_json(full))["status"] == "idle"
            # The VM went away: the list hears offline for the workspace, the
            # session's subscriber for its session.
            assert await recv_json(ws) == {
                "type": "status",
                "workspaceId": "w1",
                "status": "offline",
            }
            assert await recv_json(full) == {
                "type": "status",
                "workspaceId": "w1",
                "sessionId": S2,
                "status": "offline",
            }
            back = {("w1", "main"): "idle", ("w1", S2): "waiting_for_input"}
            async with vm_with_sessions(relay, {**logs, ("w1", S2): ("e2", 2)}, back):
                want = {
                    "type": "status",
                    "workspaceId": "w1",
                    "sessionId": S2,
                    "status": "waiting_for_input",
                }
                assert await recv_json(full) == want  # its own session's word, at once
                assert await recv_json(ws) == want  # and the list, the most urgent one
                await relay.control.next_event(
                    "workspace_status", lambda e: e["status"] == "waiting_for_input"
                )

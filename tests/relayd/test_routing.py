"""relayd end to end: subscribe, snapshot, replay, fan-out, forwarding, VM drop and return."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from tests.relayd.fakevm import FakeVm
from tests.support.relayd import Relayd, recv_json, send_json


@contextlib.asynccontextmanager
async def online_vm(
    relay: Relayd, vm_id: str = "vm1", **logs: tuple[str, int]
) -> AsyncIterator[FakeVm]:
    async with relay.connect_vm(vm_id) as ws:
        vm = FakeVm(ws, vm_id)
        await vm.hello(**logs)
        await relay.control.next_event("vm_online", lambda e: e["vmId"] == vm_id)
        yield vm


async def subscribe(
    ws: WebSocketConnection, workspace_id: str = "w1", **fields: Any
) -> dict[str, Any]:
    await send_json(ws, {"type": "subscribe", "workspaceId": workspace_id, **fields})
    return await recv_json(ws)


async def seqs(ws: WebSocketConnection, count: int) -> list[int]:
    out = []
    for _ in range(count):
        msg = await recv_json(ws)
        out.append(msg["seq"])
    return out


async def test_snapshot_then_live_to_many_clients(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1", "u2"])
        async with online_vm(relay, w1=("e1", 0)) as vm, contextlib.AsyncExitStack() as stack:
            assert (await vm.recv())["type"] == "workspace_assigned"
            clients = [
                await stack.enter_async_context(relay.connect_client(f"u{1 + i % 2}"))
                for i in range(8)
            ]
            await vm.stream("w1", 5)
            for ws in clients:
                assert await subscribe(ws) == {
                    "type": "subscribed",
                    "workspaceId": "w1",
                    "epoch": "e1",
                    "mode": "snapshot",
                }
            request = await vm.expect("snapshot_request")
            # Live frames while the snapshot is on its way are held, then sent after it.
            await vm.stream("w1", 3)
            await vm.snapshot("w1", request["requestId"])
            await vm.stream("w1", 4)
            for ws in clients:
                snap = await recv_json(ws)
                assert snap["type"] == "messages_snapshot"
                assert snap["seq"] == 8
                assert await seqs(ws, 4) == [9, 10, 11, 12]
            # Only one snapshot_request for all eight (they joined the same one).
            stats = await relay.control.request("stats")
            assert stats["snapshots"] == {"requested": 1, "received": 1, "replays": 0}


async def test_snapshot_behind_live_frames_is_followed_by_the_buffer(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with online_vm(relay, w1=("e1", 0)) as vm, relay.connect_client("u1") as ws:
            await subscribe(ws)
            request = await vm.expect("snapshot_request")
            await vm.stream("w1", 5)  # seqs 1..5 reach relayd before the snapshot...
            vm.seq["w1"] = 2
            await vm.snapshot("w1", request["requestId"])  # ...which covers only up to 2
            vm.seq["w1"] = 5
            await vm.stream("w1", 1)
            snap = await recv_json(ws)
            assert (snap["type"], snap["seq"]) == ("messages_snapshot", 2)
            assert await seqs(ws, 4) == [3, 4, 5, 6]


async def test_resume_with_last_seq_replays_from_the_buffer(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with online_vm(relay, w1=("e1", 0)) as vm:
            await vm.stream("w1", 10)
            async with relay.connect_client("u1") as ws:
                reply = await subscribe(ws, lastSeq=4, epoch="e1")
                assert reply == {
                    "type": "subscribed",
                    "workspaceId": "w1",
                    "epoch": "e1",
                    "mode": "replay",
                }
                assert await seqs(ws, 6) == [5, 6, 7, 8, 9, 10]
                await vm.stream("w1", 1)
                assert await seqs(ws, 1) == [11]
            async with relay.connect_client("u1") as ws:
                # A wrong epoch, or a lastSeq beyond what relayd saw: a snapshot instead.
                assert (await subscribe(ws, lastSeq=4, epoch="other"))["mode"] == "snapshot"
                request = await vm.expect("snapshot_request")
                assert (await subscribe(ws, lastSeq=99, epoch="e1"))["mode"] == "snapshot"
                await vm.snapshot("w1", request["requestId"])
                snap = await recv_json(ws)
                assert (snap["type"], snap["seq"]) == ("messages_snapshot", 11)


async def test_vm_drop_and_return(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with relay.connect_client("u1") as ws:
            async with online_vm(relay, w1=("e1", 0)) as vm:
                await vm.stream("w1", 3)
                assert (await subscribe(ws, lastSeq=0, epoch="e1"))["mode"] == "replay"
                assert await seqs(ws, 3) == [1, 2, 3]
            assert await recv_json(ws) == {
                "type": "status",
                "workspaceId": "w1",
                "status": "offline",
            }
            await relay.control.next_event("vm_offline")
            # The user's messages now get vm_offline.
            await send_json(
                ws,
                {
                    "type": "user_message",
                    "workspaceId": "w1",
                    "clientMessageId": "m1",
                    "text": "hi",
                },
            )
            error = await recv_json(ws)
            assert (error["code"], error["ref"]) == ("vm_offline", "m1")
            # Back with the same log: the client just continues.
            async with online_vm(relay, w1=("e1", 3)) as vm:
                vm.seq["w1"] = 3
                await vm.stream("w1", 2)
                assert await seqs(ws, 2) == [4, 5]
            assert (await recv_json(ws))["status"] == "offline"
            # Back with messages relayd never saw: a snapshot brings the client up to date.
            async with online_vm(relay, w1=("e1", 9)) as vm:
                again = await recv_json(ws)
                assert (again["type"], again["mode"]) == ("subscribed", "snapshot")
                request = await vm.expect("snapshot_request")
                vm.seq["w1"] = 9
                await vm.snapshot("w1", request["requestId"])
                await vm.stream("w1", 1)
                snap = await recv_json(ws)
                assert (snap["type"], snap["seq"]) == ("messages_snapshot", 9)
                assert await seqs(ws, 1) == [10]


async def test_vm_back_with_unchanged_log_tells_subscribers_its_status(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with relay.connect_client("u1") as ws, relay.connect_client("u1") as lister:
            async with relay.connect_vm("vm1") as vm_ws:
                vm = FakeVm(vm_ws, "vm1")
                await vm.hello_with_statuses({"w1": "idle"}, {"w1": ("e1", 0)})
                await relay.control.next_event("vm_online")
                await vm.stream("w1", 1)
                assert (await subscribe(ws, lastSeq=0, epoch="e1"))["mode"] == "replay"
                assert await seqs(ws, 1) == [1]
                assert (await subscribe(lister, statusOnly=True))["mode"] == "status"
                assert (await recv_json(lister))["status"] == "idle"  # known from hello alone
            for peer in (ws, lister):
                assert (await recv_json(peer))["status"] == "offline"
            async with relay.connect_vm("vm1") as vm_ws:
                await FakeVm(vm_ws, "vm1").hello_with_statuses({"w1": "idle"}, {"w1": ("e1", 1)})
                back = {"type": "status", "workspaceId": "w1", "status": "idle"}
                assert await recv_json(ws) == back
                assert await recv_json(lister) == back
                event = await relay.control.next_event(
                    "workspace_status", lambda e: e["status"] == "idle"
                )
                assert event["workspaceId"] == "w1"


async def test_subscribe_while_vm_offline_gets_snapshot_when_it_returns(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with relay.connect_client("u1") as ws:
            reply = await subscribe(ws)
            assert (reply["mode"], reply["epoch"]) == ("snapshot", None)
            assert (await recv_json(ws))["status"] == "offline"
            async with online_vm(relay, w1=("e7", 4)) as vm:
                request = await vm.expect("snapshot_request")
                await vm.snapshot("w1", request["requestId"])
                snap = await recv_json(ws)
                assert (snap["type"], snap["seq"], snap["epoch"]) == ("messages_snapshot", 4, "e7")


async def test_status_only_subscription(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with relay.connect_client("u1") as ws:
            reply = await subscribe(ws, statusOnly=True)
            assert reply["mode"] == "status"
            assert (await recv_json(ws))["status"] == "offline"
            async with online_vm(relay, w1=("e1", 0)) as vm:
                await vm.stream("w1", 2)
                await vm.status("w1", "running")
                status = await recv_json(ws)
                assert (status["type"], status["status"], status["seq"]) == ("status", "running", 3)
                event = await relay.control.next_event("workspace_status")
                assert event == {
                    "type": "workspace_status",
                    "workspaceId": "w1",
                    "status": "running",
                }
                async with relay.connect_client("u1") as late:
                    await subscribe(late, statusOnly=True)
                    assert (await recv_json(late))["status"] == "running"
            assert (await recv_json(ws))["status"] == "offline"


async def test_forwarding_adds_user_id_and_audits(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with online_vm(relay) as vm, relay.connect_client("u1") as ws:
            await vm.expect("workspace_assigned")
            await send_json(
                ws,
                {
                    "type": "user_message",
                    "workspaceId": "w1",
                    "clientMessageId": "m1",
                    "text": "hello",
                    "userId": "someone-else",
                    "extra": 1,
                },
            )
            assert await vm.recv() == {
                "type": "user_message",
                "workspaceId": "w1",
                "clientMessageId": "m1",
                "text": "hello",
                "userId": "u1",
            }
            await send_json(
                ws,
                {
                    "type": "permission_response",
                    "workspaceId": "w1",
                    "requestId": "p1",
                    "allow": False,
                    "message": "no",
                },
            )
            forwarded = await vm.recv()
            assert (forwarded["type"], forwarded["userId"], forwarded["allow"]) == (
                "permission_response",
                "u1",
                False,
            )
            await send_json(ws, {"type": "interrupt", "workspaceId": "w1"})
            assert (await vm.recv())["type"] == "interrupt"
            # An interrupt is audited as the client asked it (decisions are
            # audited from the VM's request_resolved: tests/relayd/test_hostile.py).
            audit = await relay.control.next_event("audit")
            assert (audit["workspaceId"], audit["userId"], audit["action"]) == (
                "w1",
                "u1",
                "interrupt",
            )
            assert audit["at"].endswith("Z")
            # The VM's error about that message goes back to the client that sent it.
            await send_json(
                vm.ws,
                {
                    "type": "error",
                    "workspaceId": "w1",
                    "code": "already_resolved",
                    "message": "answered already",
                    "ref": "p1",
                },
            )
            error = await recv_json(ws)
            assert (error["code"], error["ref"]) == ("already_resolved", "p1")


async def test_users_not_allowed_see_not_found(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with online_vm(relay) as vm, relay.connect_client("intruder") as ws:
            for message in (
                {"type": "subscribe", "workspaceId": "w1"},
                {"type": "subscribe", "workspaceId": "does-not-exist"},
                {"type": "user_message", "workspaceId": "w1", "clientMessageId": "m", "text": "x"},
                {"type": "interrupt", "workspaceId": "w1"},
            ):
                await send_json(ws, message)
                reply = await recv_json(ws)
                assert (reply["type"], reply["code"]) == ("error", "not_found"), message
            # Nothing was forwarded to the VM.
            stats = await relay.control.request("stats")
            assert stats["messages"]["forwarded"] == 0
            assert (await vm.recv())["type"] == "workspace_assigned"


async def test_bad_input_gets_errors_and_the_connection_stays(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with online_vm(relay) as vm, relay.connect_client("u1") as ws:
            cases: list[tuple[str | bytes, str]] = [
                ("not json", "bad_request"),
                ("[1,2]", "bad_request"),
                ('{"no": "type"}', "bad_request"),
                ('{"type": "teleport"}', "unknown_type"),
                ('{"type": "subscribe"}', "bad_request"),
                ('{"type": "subscribe", "workspaceId": 5}', "bad_request"),
                ('{"type": "subscribe", "workspaceId": "w1", "lastSeq": "3"}', "bad_request"),
                (
                    '{"type": "permission_response", "workspaceId": "w1", '
                    '"requestId": "r", "allow": "yes"}',
                    "bad_request",
                ),
                (b"\x00binary", "bad_request"),
            ]
            for frame, code in cases:
                await ws.send_message(frame)
                reply = await recv_json(ws)
                assert (reply["type"], reply["code"]) == ("error", code), frame
            # VM side too.
            for frame, code in [
                ("nonsense", "bad_request"),
                ('{"type":"teleport"}', "unknown_type"),
                ('{"type":"claude_message","workspaceId":"w1"}', "bad_request"),
                (
                    '{"type":"claude_message","workspaceId":"other","seq":1,"epoch":"e"}',
                    "forbidden",
                ),
            ]:
                await vm.ws.send_message(frame)
                reply = await vm.expect("error")
                assert reply["code"] == code, frame
            assert (await subscribe(ws))["type"] == "subscribed"

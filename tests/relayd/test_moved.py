"""``moved``: relayd closes the clients of workspaces that another node serves now (4307)."""

from __future__ import annotations

import trio

from tests.relayd.fakevm import FakeVm
from tests.support.relayd import Relayd, close_code, recv_json, send_json


async def test_moved_closes_the_followers_of_those_workspaces_only(relay: Relayd) -> None:
    with trio.fail_after(20):
        ctl = relay.control
        await ctl.assign("w1", "vm1", ["u1", "u2"])
        await ctl.assign("w2", "vm1", ["u2"])
        async with (
            relay.connect_vm("vm1") as vm_ws,
            relay.connect_client("u1") as follower,
            relay.connect_client("u2", token=relay.client_token("u2")) as lister,
            relay.connect_client("u2", token=relay.client_token("u2")) as bystander,
        ):
            vm = FakeVm(vm_ws, "vm1")
            await vm.hello(w1=("e1", 0), w2=("e2", 0))
            await send_json(
                follower, {"type": "subscribe", "workspaceId": "w1", "lastSeq": 0, "epoch": "e1"}
            )
            assert (await recv_json(follower))["type"] == "subscribed"
            # The workspace list follows w1 status-only: it is closed too.
            await send_json(lister, {"type": "subscribe", "workspaceId": "w1", "statusOnly": True})
            assert (await recv_json(lister))["mode"] == "status"
            await send_json(
                bystander, {"type": "subscribe", "workspaceId": "w2", "lastSeq": 0, "epoch": "e2"}
            )
            assert (await recv_json(bystander))["type"] == "subscribed"

            assert (await ctl.request("moved", workspaceIds=["w1", "unknown"]))["closed"] == 2
            assert await close_code(follower) == 4307
            assert await close_code(lister) == 4307
            # The bystander, and the VM, are untouched: a frame still reaches it.
            await vm.stream("w2", 1)
            got = await recv_json(bystander)
            assert (got["type"], got["workspaceId"], got["seq"]) == ("claude_message", "w2", 1)
            assert (await ctl.request("moved", workspaceIds=[]))["closed"] == 0


async def test_moved_refuses_a_malformed_request(relay: Relayd) -> None:
    with trio.fail_after(20):
        ctl = relay.control
        for line in (
            b'{"id": "a", "type": "moved"}',
            b'{"id": "a", "type": "moved", "workspaceIds": "w1"}',
            b'{"id": "a", "type": "moved", "workspaceIds": [1]}',
            b'{"id": "a", "type": "moved", "workspaceIds": [""]}',
        ):
            await ctl.send_line(line)
            reply = await ctl.next_reply()
            assert (reply["ok"], reply["error"]["code"]) == (False, "bad_request"), line

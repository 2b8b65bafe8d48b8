"""A VM that comes back holding workspaces it no longer owns is told to stop them.

Only once the control plane's first ``sync`` made relayd's ownership table
authoritative; before that a workspace missing from the table may only mean
that relayd has just restarted.
"""

from __future__ import annotations

from typing import Any

import trio

from tests.relayd.fakevm import FakeVm
from tests.support.relayd import Relayd, recv_json, send_json


def _entry(workspace_id: str, vm_id: str, users: list[str]) -> dict[str, Any]:
    return {
        "workspaceId": workspace_id,
        "vmId": vm_id,
        "userIds": users,
        "issue": {"url": f"https://github.com/o/r/issues/1#{workspace_id}"},
    }


async def _hello(relay: Relayd, vm: FakeVm, **logs: tuple[str, int]) -> None:
    await vm.hello(**logs)
    await relay.control.next_event("vm_online", lambda e: e["vmId"] == vm.vm_id)


async def test_before_the_first_sync_nothing_is_released(relay: Relayd) -> None:
    with trio.fail_after(20):
        async with relay.connect_vm("vm1") as ws:
            vm = FakeVm(ws, "vm1")
            await _hello(relay, vm, gone=("e1", 3))
            # Something relayd surely sends after the hello: the VM's next frame
            # is this assignment, so no workspace_released came before it.
            await relay.control.assign("w1", "vm1", ["u1"])
            assert await vm.recv() == {
                "type": "workspace_assigned",
                "workspaceId": "w1",
                "issue": {
                    "url": "https://github.com/o/r/issues/1#w1",
                    "owner": "o",
                    "repo": "r",
                    "number": 1,
                },
            }


async def test_hello_after_sync_releases_what_the_vm_does_not_own(relay: Relayd) -> None:
    with trio.fail_after(20):
        reply = await relay.control.request(
            "sync", workspaces=[_entry("w1", "vm1", ["u1"]), _entry("moved", "vm2", ["u1"])]
        )
        assert reply["workspaces"] == 2
        async with relay.connect_vm("vm1") as ws, relay.connect_client("u1") as client:
            vm = FakeVm(ws, "vm1")
            await _hello(relay, vm, w1=("e1", 0), moved=("e1", 4), deleted=("e2", 7))
            assert (await vm.recv())["type"] == "workspace_assigned"
            released = {(await vm.recv())["workspaceId"] for _ in range(2)}
            assert released == {"moved", "deleted"}
            # The owned workspace still works; the released ones are refused.
            await send_json(client, {"type": "subscribe", "workspaceId": "w1", "lastSeq": 0})
            assert (await recv_json(client))["type"] == "subscribed"
            await vm.stream("moved", 1)
            error = await vm.expect("error")
            assert error["code"] == "forbidden"
            # A second hello on the same connection: told again (the VM still lists it).
            await vm.hello(w1=("e1", 0), deleted=("e2", 7))
            frames = [await vm.recv(), await vm.recv()]
            assert [f["type"] for f in frames] == ["workspace_assigned", "workspace_released"]
            assert frames[1]["workspaceId"] == "deleted"


async def test_the_first_sync_releases_what_online_vms_hold_but_do_not_own(
    relay: Relayd,
) -> None:
    with trio.fail_after(20):
        async with relay.connect_vm("vm1") as ws:
            vm = FakeVm(ws, "vm1")
            await _hello(relay, vm, w1=("e1", 2), gone=("e1", 3))
            await relay.control.request("sync", workspaces=[_entry("w1", "vm1", ["u1"])])
            assert (await vm.recv())["type"] == "workspace_assigned"
            assert await vm.recv() == {"type": "workspace_released", "workspaceId": "gone"}
            # A later sync does not repeat it, and a release is sent once.
            await relay.control.request("sync", workspaces=[])
            assert await vm.recv() == {"type": "workspace_released", "workspaceId": "w1"}
            await relay.control.assign("w2", "vm1", ["u1"])
            assert (await vm.recv())["workspaceId"] == "w2"

"""relayd and a user_message's attachments: forwarded to the VM exactly, a wrong shape
refused at the edge (never forwarded), the whole frame bounded by --max-client-frame."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import trio

from relayd.settings import Settings
from tests.relayd.fakevm import FakeVm
from tests.support.images import b64, png
from tests.support.relayd import Relayd, close_code, recv_json, send_json

FILES = [
    {"type": "image", "mediaType": "image/png", "name": "a.png", "data": b64(png(3, 3))},
    {"type": "text", "name": "notes.md", "text": "# Notes\n\u00e9\u00e8 \U0001f600\n"},
]


@contextlib.asynccontextmanager
async def online_vm(relay: Relayd) -> AsyncIterator[FakeVm]:
    async with relay.connect_vm("vm1") as ws:
        vm = FakeVm(ws, "vm1")
        await vm.hello()
        await relay.control.next_event("vm_online", lambda e: e["vmId"] == "vm1")
        yield vm


def message(cid: str, attachments: object) -> dict[str, object]:
    return {
        "type": "user_message",
        "workspaceId": "w1",
        "clientMessageId": cid,
        "text": "look",
        "attachments": attachments,
    }


async def test_attachments_reach_the_vm_as_sent_and_bad_shapes_stop_at_relayd(
    relay: Relayd,
) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with online_vm(relay) as vm, relay.connect_client("u1") as ws:
            await vm.expect("workspace_assigned")
            await send_json(ws, message("m1", FILES))
            assert await vm.recv() == {**message("m1", FILES), "userId": "u1"}

            await send_json(ws, message("m2", [{"type": "image", "mediaType": "image/bmp"}]))
            error = await recv_json(ws)
            assert (error["type"], error["code"], error["ref"]) == ("error", "bad_request", "m2")
            assert "attachments[0]" in error["message"]
            # Not forwarded: the next thing the VM gets is the next good message.
            await send_json(ws, message("m3", []))
            forwarded = await vm.recv()
            assert forwarded["clientMessageId"] == "m3"
            assert "attachments" not in forwarded


async def test_a_message_over_the_client_frame_limit_closes_with_1009(relay: Relayd) -> None:
    limit = Settings().max_client_frame  # the default, as the web app assumes
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with online_vm(relay) as vm, relay.connect_client("u1") as ws:
            await vm.expect("workspace_assigned")
            data = "A" * (limit - 200)
            image = {"type": "image", "mediaType": "image/png", "data": data}
            frame = json.dumps(message("big", [image]))
            assert len(frame) < limit
            await ws.send_message(frame)  # just under: forwarded
            assert (await vm.recv())["attachments"][0]["data"] == data
            image["data"] = "A" * limit
            await ws.send_message(json.dumps(message("huge", [image])))
            assert await close_code(ws) == 1009

"""relayd reads VM frames with relayd.wsparse: fragments, control frames, limits, end to end.

The VM here is a raw TCP connection writing frames by hand (trio-websocket's
client cannot fragment or send broken frames, and its own reader would race
the test for relayd's close frame).
"""

from __future__ import annotations

import base64
import json
import os
import struct
from pathlib import Path

import trio

from tests.relayd.test_wsparse import frame
from tests.support.relayd import Relayd, start_relayd
from wire.protocol import SUBPROTOCOL, VM_PATH


class RawVm:
    """A VM's WebSocket spoken byte by byte."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def connect(cls, relay: Relayd, vm_id: str, pipelined: bytes = b"") -> RawVm:
        """Open the WebSocket; ``pipelined`` bytes go out with the request, unanswered."""
        stream = await trio.open_tcp_stream(relay.host, relay.port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {VM_PATH} HTTP/1.1\r\nHost: {relay.host}:{relay.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"
            f"Authorization: Bearer {relay.vm_token(vm_id)}\r\n\r\n"
        )
        await stream.send_all(request.encode() + pipelined)
        vm = cls(stream)
        while b"\r\n\r\n" not in vm.buffer:
            vm.buffer += await stream.receive_some(4096)
        head, _, vm.buffer = vm.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return vm

    async def next_frame(self) -> tuple[int, bytes] | None:
        """The next server frame (not a ping) as (opcode, payload); None at EOF."""
        while True:
            if len(self.buffer) >= 10:
                size, at = self.buffer[1] & 0x7F, 2
                if size == 126:
                    size, at = struct.unpack("!H", self.buffer[2:4])[0], 4
                elif size == 127:
                    size, at = struct.unpack("!Q", self.buffer[2:10])[0], 10
            elif len(self.buffer) >= 2 and self.buffer[1] & 0x7F < 126:
                size, at = self.buffer[1] & 0x7F, 2
            else:
                size, at = 1 << 62, 0
            if len(self.buffer) >= at + size:
                opcode, payload = self.buffer[0] & 0x0F, self.buffer[at : at + size]
                self.buffer = self.buffer[at + size :]
                if opcode != 9:
                    return opcode, payload
                continue
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.buffer += data

    async def next_json(self) -> dict[str, object]:
        """The next text frame, parsed (control frames skipped)."""
        while True:
            got = await self.next_frame()
            assert got is not None
            if got[0] == 1:
                obj = json.loads(got[1])
                assert isinstance(obj, dict)
                return obj

    async def close_code(self) -> int:
        """Read to relayd's close frame; its code."""
        while True:
            got = await self.next_frame()
            assert got is not None, "no close frame"
            if got[0] == 8:
                code: int = struct.unpack("!H", got[1][:2])[0]
                return code


async def test_fragmented_hello_with_a_ping_between(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        vm = await RawVm.connect(relay, "vm1")
        hello = json.dumps({"type": "hello", "vmId": "vm1", "workspaces": []}).encode()
        raw = (
            frame(1, hello[:10], fin=False)
            + frame(9, b"are you there")
            + frame(0, hello[10:20], fin=False)
            + frame(0, hello[20:])
        )
        for i in range(12):  # the first bytes one at a time
            await vm.stream.send_all(raw[i : i + 1])
        await vm.stream.send_all(raw[12:])
        assert await vm.next_frame() == (10, b"are you there")  # the pong, between fragments
        await relay.control.next_event("vm_online", lambda e: e["vmId"] == "vm1")
        assert (await vm.next_json())["type"] == "workspace_assigned"
        # A binary message is refused with an error; the connection stays.
        await vm.stream.send_all(frame(2, b"\x00\x01"))
        assert (await vm.next_json())["code"] == "bad_request"
        await vm.stream.send_all(frame(1, b"\xff\xfe"))  # not UTF-8
        assert await vm.close_code() == 1007


async def test_frames_sent_with_the_handshake_request_are_read(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        hello = {
            "type": "hello",
            "vmId": "vm1",
            "workspaces": [{"workspaceId": "w1", "epoch": "e1", "seq": 0}],
        }
        vm = await RawVm.connect(relay, "vm1", pipelined=frame(1, json.dumps(hello).encode()))
        await relay.control.next_event("vm_online", lambda e: e["vmId"] == "vm1")
        assert (await vm.next_json())["type"] == "workspace_assigned"


async def test_protocol_error_is_1002(relay: Relayd) -> None:
    with trio.fail_after(20):
        vm = await RawVm.connect(relay, "vm1")
        await vm.stream.send_all(frame(0, b"continuation of nothing"))
        assert await vm.close_code() == 1002


async def test_too_big_is_1009_from_the_header_alone(tmp_path: Path) -> None:
    async with start_relayd(tmp_path, args=["--max-vm-frame", "5000"]) as relay:
        with trio.fail_after(20):
            vm = await RawVm.connect(relay, "vm1")
            # 4 bytes of UTF-8 per character at most: 20001 bytes cannot fit 5000.
            await vm.stream.send_all(frame(1, b"y" * 20001)[:40])
            assert await vm.close_code() == 1009

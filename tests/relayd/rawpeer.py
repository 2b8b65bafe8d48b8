"""A WebSocket peer of relayd on a raw socket, for bursts and slow readers.

trio-websocket writes one frame per call and grows its socket's receive
buffer as the kernel pleases; these tests need a VM that writes thousands of
frames in one go (faster than any client reads) and a client whose receive
buffer is small and fixed (``SO_RCVBUF``), so that what relayd holds for a
reader is not hidden in kernel buffers.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from typing import Any

import trio

from relayd.wsparse import unmask
from wire.protocol import SUBPROTOCOL


class Closed(Exception):
    """relayd closed the connection: its close code (1006 without a close frame)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame, masked as a client's must be."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + size.to_bytes(8, "big")
    return head + mask + unmask(payload, mask)


class RawPeer:
    """Sends text frames in bulk; reads relayd's frames one message at a time."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.buffer = b""
        self._sending = trio.Lock()

    async def _send(self, data: bytes) -> None:
        async with self._sending:
            view = memoryview(data)
            while view:
                sent = await self.sock.send(view)
                view = view[sent:]

    async def send_texts(self, texts: list[str]) -> None:
        """Every text as one frame, all in one write."""
        await self._send(b"".join(masked_frame(1, t.encode()) for t in texts))

    async def send_message(self, text: str) -> None:
        """One text frame (as trio-websocket's connection has it, for :class:`FakeVm`)."""
        await self.send_texts([text])

    async def get_message(self) -> str:
        """The next text message (as trio-websocket's connection has it)."""
        return json.dumps(await self.recv_json())

    async def send_json(self, obj: dict[str, Any]) -> None:
        """One JSON text frame."""
        await self.send_texts([json.dumps(obj)])

    async def recv_json(self) -> dict[str, Any]:
        """The next text message as JSON; pings are answered; :class:`Closed` at the end."""
        while True:
            got = self._cut()
            if got is None:
                data = await self.sock.recv(65536)
                if not data:
                    raise Closed(1006)
                self.buffer += data
                continue
            opcode, payload = got
            if opcode == 1:
                obj = json.loads(payload)
                assert isinstance(obj, dict)
                return obj
            if opcode == 9:
                await self._send(masked_frame(10, payload))
            elif opcode == 8:
                raise Closed(int.from_bytes(payload[:2], "big") if payload else 1005)

    def _cut(self) -> tuple[int, bytes] | None:
        buffer = self.buffer
        if len(buffer) < 2:
            return None
        opcode, size, at = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                return None
            size, at = int.from_bytes(buffer[2:4], "big"), 4
        elif size == 127:
            if len(buffer) < 10:
                return None
            size, at = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < at + size:
            return None
        self.buffer = buffer[at + size :]
        return opcode, buffer[at : at + size]


async def open_raw_peer(
    host: str, port: int, path: str, token: str, *, receive_buffer: int | None = None
) -> RawPeer:
    """Connect and do the opening handshake (``receive_buffer``: a fixed ``SO_RCVBUF``)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    await sock.send(request.encode())
    peer = RawPeer(sock)
    while b"\r\n\r\n" not in peer.buffer:
        data = await sock.recv(65536)
        if not data:
            raise Closed(1006)
        peer.buffer += data
    head, _, peer.buffer = peer.buffer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise AssertionError(head.decode(errors="replace"))
    return peer

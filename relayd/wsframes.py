"""Send a batch of text frames in one write: relayd's outgoing hot path.

trio-websocket's ``send_message`` encodes one frame with wsproto and makes one
``send_all`` (one syscall) per message; at fan-out rates the syscalls are most
of relayd's CPU time. A writer that finds several frames queued for a peer
sends them together instead: each is framed here (a server's frames are not
masked, so a frame is a 2-10 byte header and the UTF-8 payload), and the lot
goes out with one ``send_all`` under the connection's own stream lock, so
pings, pongs and the close frame that trio-websocket sends still land between
whole frames.

This leans on three private attributes of ``trio_websocket.WebSocketConnection``
(``_close_reason``, ``_stream_lock``, ``_stream``) and on
``_abort_web_socket``, exactly as its own ``_send`` uses them (pinned
version 0.12.2). wsproto keeps no state for complete outgoing messages when
no extension is negotiated (relayd accepts none), so framing them outside it
is safe.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

_FIN_TEXT = 0x81


def encode_text_frame(text: str) -> bytes:
    """One unmasked, final text frame (RFC 6455 section 5.2)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", _FIN_TEXT, 126, size) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, size) + payload


async def send_text_frames(ws: WebSocketConnection, frames: Iterable[str]) -> None:
    """Send whole text frames with one write; raises ConnectionClosed like ``send_message``."""
    if ws._close_reason:
        raise ConnectionClosed(ws._close_reason)
    data = b"".join([encode_text_frame(f) for f in frames])
    async with ws._stream_lock:
        try:
            await ws._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await ws._abort_web_socket()
            raise ConnectionClosed(ws._close_reason) from None


class _SendWithoutYield:
    """The reader side of trio-websocket's message channel, minus a yield per message.

    trio-websocket's reader task hands each message over with ``await
    channel.send()``, which yields to the scheduler even when the channel has
    room; relayd's VM reader then gets one frame per scheduler round, and the
    client writers wake for each. Sending without that yield while there is
    room lets the reader parse a whole socket read in one go, and relayd fan
    the lot out at once. When the channel is full it waits as before.
    """

    def __init__(self, inner: trio.MemorySendChannel[str | bytes]) -> None:
        self._inner = inner

    async def send(self, value: str | bytes) -> None:
        try:
            self._inner.send_nowait(value)
        except trio.WouldBlock:
            await self._inner.send(value)

    async def aclose(self) -> None:
        await self._inner.aclose()


def read_in_bulk(ws: WebSocketConnection, queue_size: int) -> None:
    """Let ``ws``'s reader hand over up to ``queue_size`` messages without yielding.

    Private attributes again (``_send_channel``, ``_recv_channel``): see the
    module docstring. Used for VM connections, whose frames relayd never waits on.
    """
    ws._send_channel = _SendWithoutYield(ws._send_channel)  # type: ignore[assignment]
    ws._recv_channel._state.max_buffer_size = queue_size


def take_ready(ws: WebSocketConnection, limit: int) -> list[str | bytes]:
    """Messages already received (up to ``limit``), without waiting or yielding."""
    ready: list[str | bytes] = []
    while len(ready) < limit:
        try:
            ready.append(ws._recv_channel.receive_nowait())
        except trio.WouldBlock:
            break
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed(ws._close_reason) from None
    return ready

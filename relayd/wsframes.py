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

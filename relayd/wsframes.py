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

import logging
import struct
from collections.abc import Iterable, Iterator
from typing import Any, Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.events import BytesMessage, TextMessage

from relayd.wsparse import MESSAGE_TOO_BIG, OP_CLOSE, ControlFrame, FrameError, FrameParser

log = logging.getLogger("relayd.wsframes")

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


def frame_type(frame: str | bytes) -> str:
    """The ``type`` of a frame written type-first (everything relayd and vmagent
    write), cheaply; ``other`` for anything else. Only for counting."""
    if isinstance(frame, str) and frame.startswith('{"type":"'):
        end = frame.find('"', 9, 60)
        if end > 9:
            return frame[9:end]
    return "other"


#: Frames longer than this are encoded for each peer and not kept.
FRAME_CACHE_MAX_FRAME: Final = 64 * 1024
#: The cache is emptied when it holds more frames than this or ...
FRAME_CACHE_MAX_ENTRIES: Final = 1024
#: ... more characters than this (so it holds at most about 4 MiB of text).
FRAME_CACHE_MAX_CHARS: Final = 4 * 1024 * 1024


class FrameCache:
    """Each fanned-out frame's encoding and type, worked out once for all its peers.

    A VM frame goes to every subscriber of its room: the same ``str`` object
    sits in each client's outbox. Each writer looks it up here (the string's
    hash is computed once and kept by the string), so a frame is encoded and
    its type read once, not once per client. Keyed by content, so a hit is
    always the right bytes; emptied wholesale when full, which only costs
    encoding again.
    """

    def __init__(
        self,
        max_entries: int = FRAME_CACHE_MAX_ENTRIES,
        max_chars: int = FRAME_CACHE_MAX_CHARS,
    ) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._entries: dict[str, tuple[bytes, str]] = {}
        self._chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    def encode(self, frames: Iterable[str]) -> tuple[bytes, dict[str, list[int]]]:
        """The frames encoded back to back, and ``type -> [frames, characters]``."""
        entries = self._entries
        parts: list[bytes] = []
        counts: dict[str, list[int]] = {}
        for frame in frames:
            entry = entries.get(frame)
            if entry is None:
                entry = (encode_text_frame(frame), frame_type(frame))
                size = len(frame)
                if size <= FRAME_CACHE_MAX_FRAME:
                    if len(entries) >= self.max_entries or self._chars + size > self.max_chars:
                        entries.clear()
                        self._chars = 0
                    entries[frame] = entry
                    self._chars += size
            parts.append(entry[0])
            count = counts.get(entry[1])
            if count is None:
                counts[entry[1]] = [1, len(frame)]
            else:
                count[0] += 1
                count[1] += len(frame)
        return b"".join(parts), counts


async def send_text_frames(ws: WebSocketConnection, frames: Iterable[str]) -> None:
    """Send whole text frames with one write; raises ConnectionClosed like ``send_message``."""
    await send_encoded(ws, b"".join([encode_text_frame(f) for f in frames]))


async def send_encoded(ws: WebSocketConnection, data: bytes) -> None:
    """Send already encoded whole frames with one write (see :meth:`FrameCache.encode`)."""
    if ws._close_reason:
        raise ConnectionClosed(ws._close_reason)
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


class _FastReadProtocol:
    """Stands in for a connection's wsproto object: frames are read by relayd.wsparse.

    trio-websocket's reader task hands each socket read to ``receive_data``
    and then dispatches ``events()``. Here a read's worth of frames is parsed
    in one go by :class:`relayd.wsparse.FrameParser` and handed over as whole
    ``TextMessage``/``BytesMessage`` events. Control frames (ping, pong,
    close) are passed, as received, to the real wsproto connection, which
    answers them and keeps the close state exactly as before; everything
    written (``send``) and every other attribute goes to it as well. The
    parser's errors close the connection with their code: 1002 and 1007 by a
    close frame handed to wsproto as if from the peer (so the answer carries
    the code; wsproto's own parse errors drop the connection without one),
    1009 through trio-websocket's own size check.
    """

    def __init__(self, ws: WebSocketConnection, real: Any, max_message_chars: int) -> None:
        self._ws = ws
        self._real = real
        # The limit counts characters; a character is at most 4 bytes of UTF-8.
        self._parser = FrameParser(4 * max_message_chars)
        self._events: list[Any] = []
        self._done = False
        #: None until the handshake is over; then whether this parser reads the frames.
        self._active: bool | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def send(self, event: Any) -> bytes:
        """Encode an outgoing event (wsproto's own ``send``)."""
        data: bytes = self._real.send(event)
        return data

    def receive_data(self, data: bytes | None) -> None:
        """Parse a socket read (``None``: the peer closed TCP, wsproto's business)."""
        if self._active is None and self._real.connection is not None:
            # The first read after the handshake: take over between frames only.
            decoder = getattr(
                getattr(self._real.connection, "_proto", None), "_frame_decoder", None
            )
            pending = getattr(decoder, "buffer", None)
            self._active = (
                pending is not None
                and not len(pending)
                and getattr(decoder, "header", None) is None
            )
            if not self._active:
                log.info("frames read by wsproto (bytes came before the handshake ended)")
        if data is None or self._done or not self._active:
            self._real.receive_data(data)
            return
        events = self._events
        for item in self._parser.feed(data):
            if type(item) is str:
                events.append(TextMessage(data=item))
            elif isinstance(item, bytes):
                events.append(BytesMessage(data=item))
            elif isinstance(item, ControlFrame):
                self._real.receive_data(item.raw)
                events.extend(self._real.events())
                if item.opcode == OP_CLOSE:
                    # Nothing may follow a close frame: what does is wsproto's to ignore.
                    self._done = True
                    return
            elif isinstance(item, FrameError):
                self._done = True
                if item.code == MESSAGE_TOO_BIG:
                    # trio-websocket's own size check sends the 1009 close frame.
                    self._ws._message_size = self._ws._max_message_size + 1
                    events.append(
                        TextMessage(data="", frame_finished=False, message_finished=False)
                    )
                else:
                    # A close frame with the error's code, fed to wsproto as if the
                    # peer had sent it: trio-websocket then answers it with that
                    # code (RFC 6455 7.4.1: 1002, 1007) and drops the connection.
                    payload = struct.pack("!H", item.code) + item.reason.encode()[:123]
                    self._real.receive_data(
                        bytes((0x88, 0x80 | len(payload))) + b"\0\0\0\0" + payload
                    )
                    events.extend(self._real.events())

    def events(self) -> Iterator[Any]:
        """What the last reads brought, in order."""
        events, self._events = self._events, []
        yield from events
        yield from self._real.events()


def parse_frames_fast(ws: WebSocketConnection) -> None:
    """Read ``ws``'s frames with relayd.wsparse once its handshake is accepted.

    Call before accepting the handshake, so that no frame can reach wsproto
    first. If the peer pipelined bytes of a frame behind its handshake request,
    wsproto holds them, and the connection keeps wsproto's reader (the
    handover must happen between frames).
    """
    ws._wsproto = _FastReadProtocol(ws, ws._wsproto, ws._max_message_size)  # type: ignore[assignment]

"""A small RFC 6455 parser for the frames a WebSocket client sends (pure, no I/O).

relayd's read path, for VMs and clients alike: wsproto parses frame by frame
in pure Python with an object per frame and per event, which was about half
of relayd's CPU time per VM frame. :class:`FrameParser` takes a socket
read's worth of bytes and parses every complete frame in it in one tight
loop, returning whole messages (``str`` for text, ``bytes`` for binary) and
control frames in order.

What it checks (a client's frames, no extension negotiated):

* every frame masked; RSV bits clear; known opcodes only; lengths in their
  minimal encoding and the 64-bit one's top bit clear (1002);
* control frames (close, ping, pong) final and at most 125 bytes, allowed
  between the fragments of a message; a continuation only inside a message
  and a new message only after the last one ended (1002);
* a message's payload at most ``max_message_bytes`` in all, checked from the
  frame headers before the payload is buffered, and in at most
  ``MAX_FRAGMENTS`` fragments (1009);
* text is valid UTF-8 once the message is whole (1007).

Control frames are returned with their payload (:class:`ControlFrame`) for
:mod:`relayd.wsconn` to answer. After an error (:class:`FrameError`, returned as the last
item) the parser takes no more input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

#: Close codes (RFC 6455 section 7.4.1).
PROTOCOL_ERROR: Final = 1002
INVALID_DATA: Final = 1007
MESSAGE_TOO_BIG: Final = 1009

_MAX_CONTROL_PAYLOAD: Final = 125
#: Fragments one message may come in (1009 beyond): each costs memory of its
#: own, so a message of tiny fragments is bounded by count as well as by size.
MAX_FRAGMENTS: Final = 1024


class FrameError:
    """Why the peer's input is refused: the close code and a reason."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"FrameError({self.code}, {self.reason!r})"


class ControlFrame:
    """A close, ping or pong frame: its opcode and unmasked payload."""

    __slots__ = ("opcode", "payload")

    def __init__(self, opcode: int, payload: bytes) -> None:
        self.opcode = opcode
        self.payload = payload

    def __repr__(self) -> str:
        return f"ControlFrame({self.opcode}, {self.payload!r})"


Item = str | bytes | ControlFrame | FrameError


def unmask_py(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` repeated (one big-int XOR, no Python loop)."""
    size = len(payload)
    if not size:
        return b""
    key = mask * (size // 4 + 1)
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key[:size], "little")
    return value.to_bytes(size, "little")


#: ``payload`` XOR the repeated ``mask``: the websockets package's C
#: implementation (about 15 times faster than :func:`unmask_py` on a VM frame,
#: where the XOR was most of the parser's time), else :func:`unmask_py`.
unmask: Callable[[bytes, bytes], bytes]
try:
    from websockets.speedups import apply_mask

    unmask = apply_mask
except ImportError:  # pragma: no cover - the locked dependency ships it compiled
    unmask = unmask_py


class FrameParser:
    """Parses a client's WebSocket frames from the bytes the socket gives."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = b""
        #: Reads held while an incomplete frame of ``_need`` bytes is not all here
        #: (joined once it is, so a big frame costs one copy, not one per read).
        self._held: list[bytes] = []
        self._held_size = 0
        self._need = 0
        #: Opcode of the fragmented message in progress (0: none), its parts and size.
        self._opcode = 0
        self._parts: list[bytes] = []
        self._size = 0
        self.failed = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held until more arrive."""
        return len(self._buffer) + self._held_size

    @property
    def in_message(self) -> bool:
        """True while a fragmented message has begun and not ended."""
        return bool(self._opcode)

    def feed(self, data: bytes) -> list[Item]:
        """Parse what ``data`` completes; a :class:`FrameError` ends the list and the parser."""
        if self.failed:
            return []
        if self._need:
            self._held.append(data)
            self._held_size += len(data)
            if len(self._buffer) + self._held_size < self._need:
                return []
            data = b"".join(self._held)
            self._held = []
            self._held_size = 0
            self._need = 0
        buf = self._buffer + data if self._buffer else data
        out: list[Item] = []
        pos = 0
        end = len(buf)
        limit = self.max_message_bytes
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 == 0x81 and b1 & 0x80 and not self._opcode:
                # The hot path, checks and all: a whole, masked text message in
                # one frame of up to 64 KiB, all here, within the limit.
                length = b1 & 0x7F
                head = pos + 2
                if length == 126 and end - head >= 2:
                    length = buf[head] << 8 | buf[head + 1]
                    head += 2
                    minimal = length >= 126
                else:
                    minimal = length < 126
                stop = head + 4 + length
                if minimal and stop <= end and length <= limit:
                    try:
                        out.append(unmask(buf[head + 4 : stop], buf[head : head + 4]).decode())
                    except UnicodeDecodeError:
                        return self._fail(out, INVALID_DATA, "text is not valid UTF-8")
                    pos = stop
                    continue
            # What the first two bytes show is checked before waiting for more.
            if b0 & 0x70:
                return self._fail(out, PROTOCOL_ERROR, "reserved bits set")
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            length = b1 & 0x7F
            if opcode >= OP_CLOSE:
                if opcode > OP_PONG:
                    return self._fail(out, PROTOCOL_ERROR, f"unknown opcode {opcode}")
                if not fin:
                    return self._fail(out, PROTOCOL_ERROR, "fragmented control frame")
                if length > _MAX_CONTROL_PAYLOAD:
                    return self._fail(out, PROTOCOL_ERROR, "control frame over 125 bytes")
            elif opcode == OP_CONTINUATION:
                if not self._opcode:
                    return self._fail(out, PROTOCOL_ERROR, "continuation outside a message")
                if len(self._parts) >= MAX_FRAGMENTS:
                    return self._fail(out, MESSAGE_TOO_BIG, "message in too many fragments")
            elif opcode <= OP_BINARY:
                if self._opcode:
                    return self._fail(out, PROTOCOL_ERROR, "new message inside a fragmented one")
            else:
                return self._fail(out, PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if not b1 & 0x80:
                return self._fail(out, PROTOCOL_ERROR, "client frames must be masked")
            head = pos + 2
            if length == 126:
                if end - head < 2:
                    break
                length = int.from_bytes(buf[head : head + 2], "big")
                head += 2
                if length < 126:
                    return self._fail(out, PROTOCOL_ERROR, "length not minimally encoded")
            elif length == 127:
                if end - head < 8:
                    break
                length = int.from_bytes(buf[head : head + 8], "big")
                head += 8
                if length >> 63:
                    return self._fail(out, PROTOCOL_ERROR, "64-bit length with the top bit set")
                if length < 65536:
                    return self._fail(out, PROTOCOL_ERROR, "length not minimally encoded")
            if opcode < OP_CLOSE and self._size + length > limit:
                return self._fail(out, MESSAGE_TOO_BIG, "message too big")
            stop = head + 4 + length
            if stop > end:
                self._need = stop - pos
                break
            payload = unmask(buf[head + 4 : stop], buf[head : head + 4])
            if opcode == OP_TEXT and fin:
                # The hot path: a whole text message in one frame.
                try:
                    out.append(payload.decode())
                except UnicodeDecodeError:
                    return self._fail(out, INVALID_DATA, "text is not valid UTF-8")
            elif opcode >= OP_CLOSE:
                out.append(ControlFrame(opcode, payload))
            elif opcode == OP_BINARY and fin:
                out.append(payload)
            else:
                if opcode:
                    self._opcode = opcode
                self._parts.append(payload)
                self._size += length
                if fin:
                    whole = b"".join(self._parts)
                    kind = self._opcode
                    self._opcode = 0
                    self._parts = []
                    self._size = 0
                    if kind == OP_TEXT:
                        try:
                            out.append(whole.decode())
                        except UnicodeDecodeError:
                            return self._fail(out, INVALID_DATA, "text is not valid UTF-8")
                    else:
                        out.append(whole)
            pos = stop
        self._buffer = bytes(buf[pos:]) if pos < end else b""
        return out

    def _fail(self, out: list[Item], code: int, reason: str) -> list[Item]:
        self.failed = True
        self._buffer = b""
        self._held = []
        self._parts = []
        out.append(FrameError(code, reason))
        return out

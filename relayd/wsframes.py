"""Text frames encoded for a batch write: relayd's outgoing hot path.

One ``send_all`` (one syscall) per message per client was most of relayd's
CPU time at fan-out rates. A writer that finds several frames queued for a
peer sends them together instead: each is framed here (a server's frames are
not masked, so a frame is a 2-10 byte header and the UTF-8 payload), and the
lot goes out with one write (:meth:`relayd.wsconn.WebSocket.send_encoded`),
under the connection's send lock, so pings, pongs and the close frame still
land between whole frames. A frame fanned out to many clients is encoded once
(:class:`FrameCache`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Final

from relayd.outbox import Entry, SharedFrames

_FIN_TEXT = 0x81


def text_frame_header(size: int) -> bytes:
    """The header of an unmasked, final text frame of ``size`` bytes (RFC 6455 5.2)."""
    if size < 126:
        return _SHORT_HEADERS[size]
    if size < 65536:
        return struct.pack("!BBH", _FIN_TEXT, 126, size)
    return struct.pack("!BBQ", _FIN_TEXT, 127, size)


_SHORT_HEADERS: Final = [bytes((_FIN_TEXT, size)) for size in range(126)]


def encode_text_frame(text: str) -> bytes:
    """One unmasked, final text frame."""
    payload = text.encode()
    return text_frame_header(len(payload)) + payload


def encode_text_frames(frames: Iterable[str]) -> bytes:
    """Frames back to back, in one ``join`` (no copy per frame)."""
    parts: list[bytes] = []
    append = parts.append
    for frame in frames:
        payload = frame.encode()
        append(text_frame_header(len(payload)))
        append(payload)
    return b"".join(parts)


def frame_type(frame: str | bytes) -> str:
    """The ``type`` of a frame written type-first (everything relayd and vmagent
    write), cheaply; ``other`` for anything else. Only for counting."""
    if isinstance(frame, str) and frame.startswith('{"type":"'):
        end = frame.find('"', 9, 60)
        if end > 9:
            return frame[9:end]
    return "other"


def add_count(counts: dict[str, list[int]], kind: str, frames: int, chars: int) -> None:
    """Add frames of one type to ``type -> [frames, characters]`` (for the metrics)."""
    count = counts.get(kind)
    if count is None:
        counts[kind] = [frames, chars]
    else:
        count[0] += frames
        count[1] += chars


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

    def encode(self, frames: Sequence[Entry]) -> tuple[bytes, dict[str, list[int]]]:
        """The frames encoded back to back, and ``type -> [frames, characters]``.

        A :class:`relayd.outbox.SharedFrames` entry is encoded once, by the
        first writer that sends it, and kept on the entry for the others.
        """
        if len(frames) == 1:
            only = frames[0]
            if type(only) is SharedFrames and only.encoded is not None and only.counts:
                # The common case of a fan-out: one chunk, already encoded by another writer.
                return only.encoded, only.counts
        parts: list[bytes] = []
        counts: dict[str, list[int]] = {}
        for frame in frames:
            if type(frame) is str:
                data, kind = self._one(frame)
                parts.append(data)
                add_count(counts, kind, 1, len(frame))
                continue
            assert isinstance(frame, SharedFrames)
            if frame.encoded is None:
                frame.encoded = encode_text_frames(frame.frames)
            if frame.counts is None:
                frame.counts = self._count_shared(frame.frames)
            parts.append(frame.encoded)
            for kind, (n, chars) in frame.counts.items():
                add_count(counts, kind, n, chars)
        return b"".join(parts), counts

    def _one(self, frame: str) -> tuple[bytes, str]:
        entries = self._entries
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
        return entry

    @staticmethod
    def _count_shared(frames: list[str]) -> dict[str, list[int]]:
        # Only when the relay did not count them as it queued them.
        counts: dict[str, list[int]] = {}
        for frame in frames:
            add_count(counts, frame_type(frame), 1, len(frame))
        return counts

"""Real little images for tests: a valid PNG of any size, built with zlib."""

from __future__ import annotations

import base64
import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 60, 30)) -> bytes:
    """A solid-colour RGB PNG that browsers and image libraries read."""
    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * height))
        + _chunk(b"IEND", b"")
    )


def b64(data: bytes) -> str:
    """Standard padded base64 text, as the protocol carries images."""
    return base64.b64encode(data).decode()

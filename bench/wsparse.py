"""Benchmark: CPU per VM frame to parse, wsproto against relayd.wsparse.

8000 masked text frames like a streamed ``claude_message`` (384 bytes), fed
in 64 KiB reads as relayd's socket gives them. Prints microseconds of CPU per
frame for each (wsproto's events are consumed; relayd's parser's messages are
returned as they come, as relayd takes them).

Run: ``.venv/bin/python bench/wsparse.py``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from relayd.wsparse import FrameParser, unmask
from wire.envelope import vm_frame

FRAMES = 8000
READ = 64 * 1024
MASK = b"\x11\x22\x33\x44"


def _client_frame(payload: bytes) -> bytes:
    size = len(payload)
    head = bytes((0x81, 0x80 | size)) if size < 126 else bytes((0x81, 0xFE)) + size.to_bytes(2)
    return head + MASK + unmask(payload, MASK)


def _wsproto(chunks: list[bytes]) -> int:
    conn = Connection(ConnectionType.SERVER)
    done = 0
    for chunk in chunks:
        conn.receive_data(chunk)
        for event in conn.events():
            if isinstance(event, TextMessage) and event.message_finished:
                done += 1
    return done


def _wsparse(chunks: list[bytes]) -> int:
    parser = FrameParser(1 << 26)
    done = 0
    for chunk in chunks:
        for item in parser.feed(chunk):
            assert isinstance(item, str)
            done += 1
    return done


def main() -> None:
    """Print CPU microseconds per frame, three rounds each."""
    delta = {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "x" * 200}}
    data = json.dumps({"type": "stream_event", "event": delta})
    text = vm_frame("claude_message", "w1", seq=1, epoch="e1", raw_fields={"data": data})
    stream = _client_frame(text.encode()) * FRAMES
    chunks = [stream[i : i + READ] for i in range(0, len(stream), READ)]
    print(f"{FRAMES} frames of {len(text)} bytes in {len(chunks)} reads of {READ // 1024} KiB")
    parsers: list[tuple[str, Callable[[list[bytes]], int]]] = [
        ("wsproto", _wsproto),
        ("relayd.wsparse", _wsparse),
    ]
    for _ in range(3):
        for name, parse in parsers:
            start = time.process_time()
            count = parse(chunks)
            spent = time.process_time() - start
            assert count == FRAMES, (name, count)
            print(f"  {name:15} {spent / FRAMES * 1e6:6.2f} us CPU per frame")


if __name__ == "__main__":
    main()

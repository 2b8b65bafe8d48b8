"""vmagent's conversation log: how fast lines are logged, snapshots built, logs read back.

Run: .venv/bin/python bench/vmagent_log.py [N]   (N stream-json lines, default 20000)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vmagent.store import Store
from wire.messages import UserMessage


def lines(n: int) -> list[str]:
    out: list[str] = []
    event: dict[str, Any]
    per_message = 50
    for i in range(n):
        m = i // per_message
        k = i % per_message
        if k == 0:
            event = {"type": "message_start", "message": {"id": f"msg_{m}"}}
        elif k == per_message - 2:
            out.append(
                json.dumps(
                    {
                        "type": "assistant",
                        "message": {
                            "id": f"msg_{m}",
                            "content": [{"type": "text", "text": "x" * 400}],
                        },
                        "session_id": "s",
                        "parent_tool_use_id": None,
                    }
                )
            )
            continue
        elif k == per_message - 1:
            event = {"type": "message_stop"}
        else:
            event = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "word "},
            }
        out.append(
            json.dumps(
                {
                    "type": "stream_event",
                    "event": event,
                    "session_id": "s",
                    "parent_tool_use_id": None,
                    "uuid": "u" * 36,
                }
            )
        )
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    data = lines(n)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        store.prepare()
        conv, logfile = store.open("ws1")
        t0 = time.perf_counter()
        for line in data:
            logfile.append(conv.claude_line(line))
        t1 = time.perf_counter()
        logfile.close()
        print(
            f"log {n} stream-json lines (one write each, no fsync): "
            f"{n / (t1 - t0):,.0f} lines/s, {(t1 - t0) / n * 1e6:.1f} us/line"
        )

        t0 = time.perf_counter()
        snap = conv.snapshot("r")
        t1 = time.perf_counter()
        kept = len(json.loads(snap)["messages"])
        print(
            f"snapshot of {n} messages: {(t1 - t0) * 1000:.1f} ms, "
            f"{len(snap) / 1e6:.2f} MB, {kept} messages after compaction"
        )

        t0 = time.perf_counter()
        again, logfile = store.open("ws1")
        t1 = time.perf_counter()
        logfile.close()
        assert again.seq == conv.seq
        print(f"read back a {n}-line log on restart: {(t1 - t0) * 1000:.1f} ms")

        conv2, logfile2 = store.open("ws2")
        t0 = time.perf_counter()
        for i in range(200):
            logfile2.append(conv2.accept_user_message(UserMessage("ws2", f"c{i}", "hello"))[1])
        t1 = time.perf_counter()
        logfile2.close()
        print(f"accept a user message (logged with fsync): {(t1 - t0) / 200 * 1000:.2f} ms each")


if __name__ == "__main__":
    main()

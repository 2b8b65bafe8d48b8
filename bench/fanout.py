"""Benchmark: CPU per delivered message of relayd's fan-out and write preparation.

No sockets: a VM frame goes through ``Relay.apply`` (one ``Deliver`` to 4
clients' outboxes) and each client's writer step (take a batch, encode it with
the shared ``FrameCache``, count it for the metrics), exactly the code relayd
runs per frame per client between its socket read and its socket write. Prints
the best of several rounds, in microseconds of process CPU per delivered message.

Run: ``.venv/bin/python bench/fanout.py``.
"""

from __future__ import annotations

import json
import time
import types
from typing import Any, cast

from relayd.outbox import Outbox
from relayd.relay import Relay
from relayd.room import Deliver, Room
from relayd.settings import Settings
from wire.tokens import TokenVerifier

CLIENTS = 4
FRAMES = 8000
#: Frames per write, about what relayd's writers carry under load.
BATCH = 16
ROUNDS = 7


def main() -> None:
    """Print the CPU per delivered message."""
    frames = [
        json.dumps(
            {
                "type": "claude_message",
                "workspaceId": "w1",
                "seq": seq,
                "epoch": "e1",
                "requestId": "r1",
                "data": {"type": "stream_event", "text": "x" * 260},
            },
            separators=(",", ":"),
        )
        for seq in range(1, FRAMES + 1)
    ]
    relay = Relay(Settings(), TokenVerifier({}, issuer="ffcloud"))
    count = relay.counter_out("client")
    cache = relay.frame_cache
    clients: tuple[Any, ...] = tuple(
        types.SimpleNamespace(outbox=Outbox(FRAMES, 1 << 30), closing=False) for _ in range(CLIENTS)
    )
    room = cast(Room, types.SimpleNamespace(workspace_id="w1"))
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        for first in range(0, FRAMES, BATCH):
            for frame in frames[first : first + BATCH]:
                relay.apply(room, [Deliver(clients, (frame,))])
            for client in clients:
                _data, counts = cache.encode(client.outbox.take(1 << 30))
                count(counts)
        best = min(best, time.process_time() - start)
    per_message = best / (FRAMES * CLIENTS) * 1e6
    print(f"fan-out: {CLIENTS} clients, {FRAMES} frames of {len(frames[0])} chars, {BATCH} a write")
    print(f"  {per_message:.2f} us CPU per delivered message (best of {ROUNDS})")


if __name__ == "__main__":
    main()

"""Benchmark: relayd's CPU per delivered message between its socket read and its socket write.

No sockets, no scheduler: the VM's frames go through exactly what relayd runs
for each socket read of a VM (``Relay.vm_frames``: counting, the envelope,
the room's log and waking 4 subscribed clients' cursors), and then each
client's writer step (read its cursor from the log, encode the batch with
the shared ``FrameCache``, count it for the metrics). Frames arrive ``BATCH`` to a read,
about what relayd sees under load. Prints the best of several rounds, in
microseconds of process CPU per delivered message: the part of relayd's cost
that is its own Python, apart from the syscalls and trio's scheduling.

Run: ``.venv/bin/python bench/fanout.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio

from bench.relay import frame
from relayd.relay import Relay
from relayd.settings import Settings
from tests.support.stubpeer import drain, room_with_clients
from wire.tokens import TokenVerifier

CLIENTS = 4
FRAMES = 8000
#: Frames per socket read (and per write), about what relayd sees under load.
BATCH = 32
ROUNDS = 7


def frames(first: int, count: int) -> list[str]:
    """``count`` claude_message frames as vmagent writes them, seqs from ``first``."""
    return [frame(seq) for seq in range(first, first + count)]


async def main() -> None:
    """Print the CPU per delivered message."""
    relay = Relay(Settings(replay_messages=FRAMES * ROUNDS), TokenVerifier({}, issuer="ffcloud"))
    vm, clients = room_with_clients(relay, [FRAMES] * CLIENTS)
    count = relay.counter_out("client")
    cache = relay.frame_cache
    best = float("inf")
    seq = 1
    for _ in range(ROUNDS):
        reads = [frames(first, BATCH) for first in range(seq, seq + FRAMES, BATCH)]
        seq += FRAMES
        start = time.process_time()
        for read in reads:
            relay.vm_frames(vm, cast(list[str | bytes], read))
            for client in clients:
                _data, counts = cache.encode(drain(relay, client))
                count(counts)
        best = min(best, time.process_time() - start)
        assert relay.stats.messages_out >= (seq - 1) * CLIENTS, "frames were not delivered"
    per_message = best / (FRAMES * CLIENTS) * 1e6
    size = len(frames(1, 1)[0])
    print(f"fan-out: 1 VM -> {CLIENTS} clients, {FRAMES} frames of {size} chars, {BATCH} a read")
    print(f"  {per_message:.2f} us CPU per delivered message (best of {ROUNDS})")


if __name__ == "__main__":
    trio.run(main)

"""Benchmark: relayd against a raw-TCP trio relay (the floor), on loopback, in one go.

Both relays run as their own process; this process plays one VM and the
clients. Two measurements each:

* throughput: the VM streams ``claude_message`` frames (a realistic
  ``stream_event`` text delta, ~300 bytes) to 4 subscribed clients as fast as
  the slowest client takes them (a window of 256 frames in flight). Reported
  as messages delivered per second of the relay process's own CPU time
  (``/proc/PID/stat`` utime + stime): "msg/s per relay core", which does not
  depend on how busy this load generator or the machine is. Wall-clock rates
  are printed too.
* latency: 1 client, the VM sends 1000 messages per second, each stamped with
  ``CLOCK_MONOTONIC`` (shared by processes); the client notes when it got it.
  p50/p99 of that path for each relay, and relayd's added latency over the floor.

The floor is newline-framed TCP with the same message path as relayd: one
reader per VM connection, a bounded queue per client fed with ``send_nowait``,
one writer task per client that sends whatever is queued in one write (as
relayd's writer does). relayd is the real daemon (``python -m relayd``).

Run: ``make bench`` or ``.venv/bin/python bench/relay.py [--quick]``. With
``--session ID`` the VM's frames name that session (a workspace's second
session, docs/protocol.md "Sessions") and the clients follow it, to compare
its path with main's (frames without ``sessionId``). ``--compare CHECKOUT``
measures another checkout's relayd in the same rounds (a before and after).
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import functools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relayd.peer import COALESCE_ROUNDS
from relayd.wsparse import unmask
from tests.support.relayd import start_relayd
from wire.envelope import vm_frame
from wire.protocol import CLIENT_PATH, SUBPROTOCOL, VM_PATH

CLIENTS = 4
WINDOW = 256
#: Frames per write in the capacity mode.
BURST = 32
TICKS = os.sysconf("SC_CLK_TCK")
_STAMP = re.compile(rb'"t":(\d+)')
#: The session the VM streams and the clients follow (None: main); ``--session``.
SESSION: str | None = None


def frame(seq: int, stamp: int = 0) -> str:
    """One claude_message as vmagent writes it: a streamed text delta."""
    data = json.dumps(
        {
            "type": "stream_event",
            "event": {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "The relay forwards this delta. " * 4},
            },
            "session_id": "3f1c2d9e-5b7a-4c1e-9f00-1234567890ab",
            "t": stamp,
        },
        separators=(",", ":"),
    )
    return vm_frame(
        "claude_message", "w1", session_id=SESSION, seq=seq, epoch="e1", raw_fields={"data": data}
    )


def cpu_seconds(pid: int) -> float:
    """CPU time of a process (all its threads), in seconds, to the nanosecond.

    ``/proc/PID/task/*/schedstat`` counts nanoseconds; ``/proc/PID/stat``
    counts clock ticks (10 ms), too coarse for a relay that handles a round
    in a tenth of a second.
    """
    try:
        return (
            sum(
                int(Path(task, "schedstat").read_text().split()[0])
                for task in Path(f"/proc/{pid}/task").iterdir()
            )
            / 1e9
        )
    except (OSError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS


# -- the floor: a raw TCP relay ------------------------------------------------


async def floor_server(batch_writes: bool) -> None:
    """Serve the floor relay; print the port on stdout."""
    clients: list[trio.MemorySendChannel[bytes]] = []

    async def client(stream: trio.SocketStream) -> None:
        send, receive = trio.open_memory_channel[bytes](1024)
        clients.append(send)
        busy = False
        try:
            # The same writer as relayd's: whatever is queued goes out in one
            # write and, under load, it waits a few scheduler rounds while
            # frames keep arriving (relayd.peer.COALESCE_ROUNDS).
            async for line in receive:
                batch = [line]
                if batch_writes:
                    queued = receive.statistics().current_buffer_used
                    for _ in range(COALESCE_ROUNDS if busy or queued else 0):
                        await trio.lowlevel.cancel_shielded_checkpoint()
                        now = receive.statistics().current_buffer_used
                        if now == queued:
                            break
                        queued = now
                    while len(batch) < 1024:
                        try:
                            batch.append(receive.receive_nowait())
                        except trio.WouldBlock:
                            break
                    busy = len(batch) > 1
                await stream.send_all(b"".join(batch))
        finally:
            clients.remove(send)

    async def vm(stream: trio.SocketStream, rest: bytes) -> None:
        buffer = rest
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                for queue in list(clients):
                    try:
                        queue.send_nowait(line + b"\n")
                    except trio.WouldBlock:
                        clients.remove(queue)
                        queue.close()

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        role, _, rest = data.partition(b"\n")
        if role == b"vm":
            await vm(stream, rest)
        else:
            await client(stream)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(handle, listeners)


# -- peers as seen by the load generator --------------------------------------


class Peers:
    """The VM and the clients, for either relay."""

    pid: int
    #: Writes the VM's frames, all in one write.
    send: Callable[[list[str]], Awaitable[None]]
    receivers: list[Reader]
    #: The last seq sent: relayd drops a seq it has already seen.
    seq: int = 0

    def next_seq(self) -> int:
        """The next seq of the workspace's log."""
        self.seq += 1
        return self.seq


@contextlib.asynccontextmanager
async def floor_peers(clients: int, *, batch_writes: bool = True) -> AsyncIterator[Peers]:
    mode = "batch" if batch_writes else "each"
    process = await trio.lowlevel.open_process(
        [sys.executable, __file__, "--serve-floor", mode], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    port = int((await process.stdout.receive_some(100)).decode().strip())
    peers = Peers()
    peers.pid = process.pid
    try:
        vm = await trio.open_tcp_stream("127.0.0.1", port)
        await vm.send_all(b"vm\n")
        readers: list[Reader] = []
        for _ in range(clients):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"client\n")
            readers.append(LineReader(stream))
        await trio.sleep(0.2)  # let the floor register the clients (it has no handshake)

        async def send(texts: list[str]) -> None:
            await vm.send_all(b"".join(text.encode() + b"\n" for text in texts))

        peers.send = send
        peers.receivers = readers
        yield peers
    finally:
        process.kill()
        await process.wait()


class Reader:
    """A client's socket as the load generator reads it: whole messages, or just how many.

    ``count()`` is what the throughput measurement uses: it keeps no message,
    so that the load generator spends as little as it can per message and the
    relay, not the generator, is the bottleneck when the VM writes in bursts.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.pending: collections.deque[bytes] = collections.deque()

    async def receive(self) -> bytes:
        """The next message."""
        while not self.pending:
            await self._read(keep=True)
        return self.pending.popleft()

    async def count(self) -> int:
        """How many messages the next read brought (at least one); they are dropped."""
        done = len(self.pending)
        self.pending.clear()
        while not done:
            done = await self._read(keep=False)
        return done

    async def _data(self) -> bytes:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError
        return bytes(data)

    async def _read(self, *, keep: bool) -> int:
        raise NotImplementedError


class LineReader(Reader):
    """The floor's clients: newline-framed."""

    async def _read(self, *, keep: bool) -> int:
        data = self.buffer + await self._data()
        if keep:
            *lines, self.buffer = data.split(b"\n")
            self.pending.extend(lines)
            return len(lines)
        self.buffer = data[data.rfind(b"\n") + 1 :]
        return data.count(b"\n")


class FrameReader(Reader):
    """relayd's clients: WebSocket frames from a server (unmasked, never fragmented by relayd).

    Cut out of each read with a few slices, as the floor's clients split lines
    (wsproto, at ~15 us a frame, or trio-websocket, with its reader task,
    would make the load generator slower for relayd than for the floor).
    """

    async def _read(self, *, keep: bool) -> int:
        buffer = self.buffer + await self._data()
        done, pos, end = 0, 0, len(buffer)
        while end - pos >= 2:
            opcode, size, at = buffer[pos] & 0x0F, buffer[pos + 1] & 0x7F, pos + 2
            if size == 126:
                if end - at < 2:
                    break
                size, at = int.from_bytes(buffer[at : at + 2], "big"), at + 2
            elif size == 127:
                if end - at < 8:
                    break
                size, at = int.from_bytes(buffer[at : at + 8], "big"), at + 8
            if end - at < size:
                break
            if opcode == 1:
                done += 1
                if keep:
                    self.pending.append(buffer[at : at + size])
            elif opcode == 9:  # a ping: answer it (masked, as a client must)
                await self.stream.send_all(masked_frame(10, buffer[at : at + size]))
            elif opcode == 8:
                raise EOFError(f"closed {int.from_bytes(buffer[at : at + 2], 'big')}")
            pos = at + size
        self.buffer = buffer[pos:]
        return done


@contextlib.asynccontextmanager
async def relayd_peers(clients: int, source: Path | None = None) -> AsyncIterator[Peers]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        # The load generator's VM does not read during a measurement, so it
        # would miss relayd's pings: none are sent.
        args = ["--log-level", "warning", "--ping-interval", "0"]
        async with start_relayd(Path(tmp), args=args, source=source) as relay:
            await relay.control.assign("w1", "vm1", [f"u{i}" for i in range(clients)])
            async with contextlib.AsyncExitStack() as stack:
                send_vm, vm_reader = await _raw_ws(
                    stack, relay.host, relay.port, VM_PATH, relay.vm_token("vm1")
                )
                log: dict[str, Any] = {"workspaceId": "w1", "epoch": "e1", "seq": 0}
                if SESSION is not None:
                    log["sessionId"] = SESSION
                hello = {"type": "hello", "vmId": "vm1", "workspaces": [log]}
                await send_vm([json.dumps(hello)])
                await relay.control.next_event("vm_online")
                await vm_reader.receive()  # workspace_assigned
                readers: list[Reader] = []
                for i in range(clients):
                    send, reader = await _raw_ws(
                        stack, relay.host, relay.port, CLIENT_PATH, relay.client_token(f"u{i}")
                    )
                    subscribe: dict[str, Any] = {"type": "subscribe", "workspaceId": "w1"}
                    if SESSION is not None:
                        subscribe["sessionId"] = SESSION
                    subscribe["lastSeq"] = 0
                    await send([json.dumps({**subscribe, "epoch": "e1"})])
                    reply = json.loads(await reader.receive())
                    assert reply["mode"] == "replay", reply
                    readers.append(reader)
                peers = Peers()
                peers.pid = relay.process.pid
                peers.send = send_vm
                peers.receivers = readers
                yield peers


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame (masked, as a client's must be)."""
    mask = random.randbytes(4)
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + size.to_bytes(8, "big")
    return head + mask + unmask(payload, mask)


async def ws_handshake(
    stream: trio.SocketStream, host: str, port: int, path: str, token: str
) -> FrameReader:
    """The opening handshake written by hand on ``stream``; a reader of what follows."""
    key = base64.b64encode(os.urandom(16)).decode()
    await stream.send_all(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError("closed during the handshake")
        buffer += data
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise EOFError(head.decode(errors="replace"))
    reader = FrameReader(stream)
    reader.buffer = buffer
    return reader


async def _raw_ws(
    stack: contextlib.AsyncExitStack, host: str, port: int, path: str, token: str
) -> tuple[Callable[[list[str]], Awaitable[None]], FrameReader]:
    """A WebSocket peer of relayd (VM or client) as cheap as the floor's: (send, receive).

    The handshake is written by hand; frames to relayd are masked with one
    big-int XOR and written one per message, as the floor's are; frames
    from relayd (unmasked, never fragmented by relayd) are cut out of each
    read with a few slices, the way the floor's clients split lines. The load
    generator must cost about the same per message for both relays: a
    slower client reader (wsproto's, ~15 us a frame; trio-websocket's, with
    its reader task, milliseconds) makes relayd's input sparser than the
    floor's, so that relayd would wake for fewer frames at a time and look
    worse per core than it is.
    """
    stream = await trio.open_tcp_stream(host, port)
    stack.push_async_callback(trio.aclose_forcefully, stream)
    reader = await ws_handshake(stream, host, port, path, token)

    async def send(texts: list[str]) -> None:
        await stream.send_all(b"".join(masked_frame(1, text.encode()) for text in texts))

    return send, reader


# -- measurements --------------------------------------------------------------


async def throughput(peers: Peers, count: int, burst: int = 1) -> dict[str, float]:
    """Stream ``count`` frames to every client, ``burst`` to a write; relay CPU and wall time."""
    frames = [frame(peers.next_seq()) for _ in range(count)]
    received = [0] * len(peers.receivers)
    progress = trio.Condition()

    async def client(i: int) -> None:
        reader = peers.receivers[i]
        while received[i] < count:
            received[i] += await reader.count()
            async with progress:
                progress.notify_all()

    cpu0, wall0 = cpu_seconds(peers.pid), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(len(peers.receivers)):
            nursery.start_soon(client, i)
        for first in range(0, count, burst):
            await peers.send(frames[first : first + burst])
            sent = min(first + burst, count)
            if sent % 32 == 0:
                async with progress:
                    while min(received) < sent - WINDOW:
                        await progress.wait()
    wall = time.perf_counter() - wall0
    cpu = cpu_seconds(peers.pid) - cpu0
    delivered = count * len(peers.receivers)
    return {
        "delivered": delivered,
        "cpu_s": cpu,
        "wall_s": wall,
        "per_core": delivered / cpu if cpu > 0 else float("nan"),
        "wall_rate": delivered / wall,
    }


async def latency(peers: Peers, rate: int, seconds: float) -> list[float]:
    """One client; ``rate`` stamped messages per second; latencies in ms."""
    count = int(rate * seconds)
    samples: list[float] = []

    async def client() -> None:
        reader = peers.receivers[0]
        while len(samples) < count:
            message = await reader.receive()
            now = time.monotonic_ns()
            match = _STAMP.search(message)
            assert match is not None
            samples.append((now - int(match.group(1))) / 1e6)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client)
        start = trio.current_time()
        for i in range(1, count + 1):
            await trio.sleep_until(start + i / rate)
            await peers.send([frame(peers.next_seq(), time.monotonic_ns())])
    return samples


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values."""
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


RELAYS: dict[str, Callable[[int], contextlib.AbstractAsyncContextManager[Peers]]] = {
    "floor": floor_peers,
    "naive": functools.partial(floor_peers, batch_writes=False),
    "relayd": relayd_peers,
}


#: How the load generator's VM writes: (name, frames per write, frames per
#: round as a multiple of the base count, relays, what it shows). The
#: saturated relays get more frames, so that a round takes them long enough
#: to measure; the naive floor only shows in the paced mode (it would take
#: seconds per round saturated, and says nothing new there).
MODES = (
    (
        "paced",
        1,
        1,
        ("floor", "naive", "relayd"),
        "one frame per write: each relay wakes at the load generator's pace",
    ),
    (
        "capacity",
        BURST,
        4,
        ("floor", "relayd"),
        f"{BURST} frames per write: each relay saturated, its cost per message",
    ),
)


async def main(quick: bool, compare: Path | None) -> None:
    count = 3000 if quick else 8000
    rounds = 2 if quick else 5
    seconds = 1.0 if quick else 1.5
    if compare is not None:
        # Another relayd (a checkout of another version) in the same rounds.
        RELAYS["other"] = functools.partial(relayd_peers, source=compare)
    modes = [
        (mode, burst, times, (*relays, *(["other"] if compare else [])), what)
        for mode, burst, times, relays, what in MODES
    ]
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        mode: {name: [] for name in relays} for mode, _, _, relays, _ in modes
    }
    lat: dict[str, list[float]] = {"floor": [], "relayd": []}
    print(f"throughput: {rounds} rounds, the relays in turn ...", file=sys.stderr, flush=True)
    async with contextlib.AsyncExitStack() as stack:
        peers = {name: await stack.enter_async_context(RELAYS[name](CLIENTS)) for name in RELAYS}
        for each in peers.values():
            await throughput(each, 500)  # warm up
        # In turn, round after round: the machine's moods hit every relay alike.
        for _ in range(rounds):
            for mode, burst, times, relays, _ in modes:
                for name in relays:
                    result = await throughput(peers[name], count * times, burst)
                    runs[mode][name].append(result)
    print("latency: 2 rounds, the relays in turn ...", file=sys.stderr, flush=True)
    async with contextlib.AsyncExitStack() as stack:
        single = {name: await stack.enter_async_context(RELAYS[name](1)) for name in lat}
        for each in single.values():
            await latency(each, 200, 0.5)  # warm up
        for _ in range(2):
            for name, each in single.items():
                lat[name] += await latency(each, 1000, seconds)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load} (busy machines skew latency)")
    print(
        f"throughput: 1 VM -> {CLIENTS} clients, frames of {len(frame(1))} bytes"
        f" (session {SESSION or 'main'}),"
        f" {rounds} rounds, msg/s per relay core (median, then each round)"
    )
    print("  (floor: raw TCP, batched writes like relayd's; naive: raw TCP, one write per message)")
    for mode, _, times, relays, what in modes:
        print(f"  {mode}: {what}; {count * times} frames a round")
        for name, results in runs[mode].items():
            rates = [r["per_core"] for r in results]
            walls = [r["wall_rate"] for r in results]
            print(
                f"    {name:7s} {statistics.median(rates):>9,.0f}"
                f"   ({', '.join(f'{x:,.0f}' for x in rates)};"
                f" wall {statistics.median(walls):,.0f} msg/s)"
            )
        compared = [("relayd", r) for r in relays if r != "relayd"]
        if "other" in relays:
            compared.append(("other", "floor"))
        for name, base in compared:
            pairs = zip(runs[mode][name], runs[mode][base], strict=True)
            ratios = [r["per_core"] / f["per_core"] for r, f in pairs]
            print(
                f"    ratio {name}/{base}: {statistics.median(ratios):.2f}"
                f" ({', '.join(f'{x:.2f}' for x in ratios)})"
            )
    print("  goal: relayd/floor >= 0.6")
    print(
        f"latency: 1 VM -> 1 client at 1000 msg/s, 2 rounds of {seconds} s"
        " (ms, VM send to client read)"
    )
    for name, samples in lat.items():
        print(
            f"  {name:7s} p50 {pct(samples, 0.5):.3f}  p99 {pct(samples, 0.99):.3f}"
            f"  max {max(samples):.3f}  mean {statistics.fmean(samples):.3f}"
        )
    for q, goal in ((0.5, 0.3), (0.99, 2.0)):
        added = pct(lat["relayd"], q) - pct(lat["floor"], q)
        print(f"  added by relayd over the floor, p{int(q * 100)}: {added:.3f} ms (goal <= {goal})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="CHECKOUT",
        help="also measure the relayd of another checkout ('other'), in the same rounds",
    )
    parser.add_argument(
        "--session",
        metavar="ID",
        help="stream a session other than main (its frames carry sessionId)",
    )
    parser.add_argument("--serve-floor", choices=["batch", "each"], help=argparse.SUPPRESS)
    options = parser.parse_args()
    SESSION = options.session
    if options.serve_floor:
        trio.run(floor_server, options.serve_floor == "batch")
    else:
        trio.run(main, options.quick, options.compare)

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

Run: ``make bench`` or ``.venv/bin/python bench/relay.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import trio
import wsproto
import wsproto.connection
import wsproto.events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.relayd import start_relayd
from wire.envelope import vm_frame
from wire.protocol import CLIENT_PATH, SUBPROTOCOL

CLIENTS = 4
WINDOW = 256
TICKS = os.sysconf("SC_CLK_TCK")
_STAMP = re.compile(rb'"t":(\d+)')


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
    return vm_frame("claude_message", "w1", seq=seq, epoch="e1", raw_fields={"data": data})


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


# -- the floor: a raw TCP relay ------------------------------------------------


async def floor_server(batch_writes: bool) -> None:
    """Serve the floor relay; print the port on stdout."""
    clients: list[trio.MemorySendChannel[bytes]] = []

    async def client(stream: trio.SocketStream) -> None:
        send, receive = trio.open_memory_channel[bytes](1024)
        clients.append(send)
        try:
            # The same writer as relayd's: whatever is queued goes out in one write.
            async for line in receive:
                batch = [line]
                while batch_writes and len(batch) < 1024:
                    try:
                        batch.append(receive.receive_nowait())
                    except trio.WouldBlock:
                        break
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
    send: Callable[[str], Awaitable[None]]
    receivers: list[Callable[[], Awaitable[bytes]]]
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
        readers = []
        for _ in range(clients):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"client\n")
            readers.append(_line_reader(stream))
        await trio.sleep(0.2)  # let the floor register the clients (it has no handshake)

        async def send(text: str) -> None:
            await vm.send_all(text.encode() + b"\n")

        peers.send = send
        peers.receivers = readers
        yield peers
    finally:
        process.kill()
        await process.wait()


def _line_reader(stream: trio.SocketStream) -> Callable[[], Awaitable[bytes]]:
    pending: list[bytes] = []
    buffer = b""

    async def receive() -> bytes:
        nonlocal buffer
        while not pending:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise EOFError
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            pending.extend(lines)
        return pending.pop(0)

    return receive


@contextlib.asynccontextmanager
async def relayd_peers(clients: int) -> AsyncIterator[Peers]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        async with start_relayd(Path(tmp), args=["--log-level", "warning"]) as relay:
            await relay.control.assign("w1", "vm1", [f"u{i}" for i in range(clients)])
            async with contextlib.AsyncExitStack() as stack:
                vm = await stack.enter_async_context(relay.connect_vm("vm1"))
                await vm.send_message(
                    json.dumps(
                        {
                            "type": "hello",
                            "vmId": "vm1",
                            "workspaces": [{"workspaceId": "w1", "epoch": "e1", "seq": 0}],
                        }
                    )
                )
                await relay.control.next_event("vm_online")
                await vm.get_message()  # workspace_assigned
                readers = []
                for i in range(clients):
                    receive = await _raw_ws_client(
                        stack, relay.host, relay.port, relay.client_token(f"u{i}")
                    )
                    reply = json.loads(await receive())
                    assert reply["mode"] == "replay", reply
                    readers.append(receive)
                peers = Peers()
                peers.pid = relay.process.pid
                peers.send = vm.send_message
                peers.receivers = readers
                yield peers


async def _raw_ws_client(
    stack: contextlib.AsyncExitStack, host: str, port: int, token: str
) -> Callable[[], Awaitable[bytes]]:
    """A client that subscribes to w1 and reads frames in one task (wsproto, no helper task).

    The load generator's clients read the way the floor's do: one task, one
    socket. (trio-websocket's client, with its reader task and a one-message
    queue, added milliseconds of its own to what this measures.)
    """
    stream = await trio.open_tcp_stream(host, port)
    stack.push_async_callback(trio.aclose_forcefully, stream)
    conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    request = wsproto.events.Request(
        host=host,
        target=CLIENT_PATH,
        subprotocols=[SUBPROTOCOL],
        extra_headers=[(b"Authorization", f"Bearer {token}".encode())],
    )
    await stream.send_all(conn.send(request))
    pending: list[bytes] = []
    parts: list[str] = []

    async def pump() -> None:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError
        conn.receive_data(data)
        for event in conn.events():
            if isinstance(event, wsproto.events.TextMessage):
                parts.append(event.data)
                if event.message_finished:
                    pending.append("".join(parts).encode())
                    parts.clear()
            elif isinstance(event, wsproto.events.Ping):
                await stream.send_all(conn.send(event.response()))
            elif isinstance(event, wsproto.events.CloseConnection):
                raise EOFError(f"closed {event.code}")

    while conn.state is not wsproto.connection.ConnectionState.OPEN:
        await pump()
    subscribe = {"type": "subscribe", "workspaceId": "w1", "lastSeq": 0, "epoch": "e1"}
    await stream.send_all(conn.send(wsproto.events.TextMessage(json.dumps(subscribe))))

    async def receive() -> bytes:
        while not pending:
            await pump()
        return pending.pop(0)

    return receive


# -- measurements --------------------------------------------------------------


async def throughput(peers: Peers, count: int) -> dict[str, float]:
    """Stream ``count`` frames to every client; relay CPU and wall time."""
    frames = [frame(peers.next_seq()) for _ in range(count)]
    received = [0] * len(peers.receivers)
    progress = trio.Condition()

    async def client(i: int) -> None:
        receive = peers.receivers[i]
        while received[i] < count:
            await receive()
            received[i] += 1
            if received[i] % 32 == 0 or received[i] == count:
                async with progress:
                    progress.notify_all()

    cpu0, wall0 = cpu_seconds(peers.pid), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(len(peers.receivers)):
            nursery.start_soon(client, i)
        for sent, text in enumerate(frames, 1):
            await peers.send(text)
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
        receive = peers.receivers[0]
        while len(samples) < count:
            message = await receive()
            now = time.monotonic_ns()
            match = _STAMP.search(message)
            assert match is not None
            samples.append((now - int(match.group(1))) / 1e6)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client)
        start = trio.current_time()
        for i in range(1, count + 1):
            await trio.sleep_until(start + i / rate)
            await peers.send(frame(peers.next_seq(), time.monotonic_ns()))
    return samples


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values."""
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def main(quick: bool) -> None:
    count = 3000 if quick else 8000
    seconds = 1.5 if quick else 3.0
    results: dict[str, dict[str, float]] = {}
    lat: dict[str, list[float]] = {}
    naive = functools.partial(floor_peers, batch_writes=False)
    for name, make in (("floor", floor_peers), ("naive", naive), ("relayd", relayd_peers)):
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        async with make(CLIENTS) as peers:
            await throughput(peers, 500)  # warm up
            results[name] = await throughput(peers, count)
        if name == "naive":
            continue
        async with make(1) as peers:
            await latency(peers, 200, 0.5)  # warm up
            lat[name] = await latency(peers, 1000, seconds)
    relayd = results["relayd"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load} (busy machines skew latency)")
    print(f"throughput: 1 VM -> {CLIENTS} clients, {count} frames of {len(frame(1))} bytes each")
    print("  (floor: raw TCP, batched writes like relayd's; naive: raw TCP, one write per message)")
    for name, r in results.items():
        print(
            f"  {name:7s} {r['per_core']:>10,.0f} msg/s per relay core"
            f"   ({r['delivered']:,.0f} delivered in {r['wall_s']:.2f} s wall,"
            f" {r['cpu_s']:.2f} s relay CPU, {r['wall_rate']:,.0f} msg/s wall)"
        )
    for name in ("floor", "naive"):
        ratio = relayd["per_core"] / results[name]["per_core"]
        print(f"  ratio relayd/{name}: {ratio:.2f} (goal against the floor: >= 0.6)")
    print(f"latency: 1 VM -> 1 client at 1000 msg/s for {seconds} s (ms, VM send to client read)")
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
    parser.add_argument("--serve-floor", choices=["batch", "each"], help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_floor:
        trio.run(floor_server, options.serve_floor == "batch")
    else:
        trio.run(main, options.quick)

"""Benchmark: relayd with many clients on loopback: memory, fan-out, a reconnect storm.

For each N (default 1,000, 5,000 and 10,000), one relayd (``python -m relayd``)
and, in this process, one VM and N clients (10 per user), all on 127.0.0.1:

* **memory**: relayd's RSS (``/proc/PID/status`` ``VmRSS``) before the
  clients connect, with N idle clients (handshake done, nothing subscribed)
  and with the N subscribed to one workspace, at rest (their writer tasks
  ended): KiB per idle client and KiB more per subscribed one;
* **fan-out**: the VM sends 100 messages (one per write, as a VM streams);
  the time until every client has all 100, as deliveries per second, and
  relayd's CPU per delivery; twice: from rest (the clients' writer tasks
  ended, relayd starts them again) and right after (warm);
* **storm**: every client drops at once; the VM sends 200 messages; every
  client comes back at once (a new connection, a handshake with a token,
  ``subscribe`` with ``lastSeq``): the seconds from the first reconnect until
  the last client has caught up, and how many were closed (none should be).

The clients are as cheap as this process can make them (a hand-written
handshake, frames cut out of each read with a few slices: ``bench.relay``);
this process shares the machine's cores with relayd, so the times are upper
bounds of relayd's. Each phase has a deadline and the whole run stops after
``--deadline`` seconds. The soft limit of open files is raised to the hard
limit (relayd inherits it); an N that does not fit in it is skipped.

Run: ``.venv/bin/python bench/scale.py [--clients 1000,5000,10000] [--source CHECKOUT]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.relay import FrameReader, cpu_seconds, frame, masked_frame, ws_handshake
from relayd.peer import WRITER_LINGER
from tests.support.relayd import Relayd, start_relayd
from tests.support.waiting import wait_until
from wire.protocol import CLIENT_PATH, VM_PATH

#: Connections per user (relayd's default limit is 32; realistic is a few).
CLIENTS_PER_USER = 10
#: Connections opened at once while the clients connect.
CONNECT_AT_ONCE = 500
FANOUT_MESSAGES = 100
STORM_MESSAGES = 200


def rss_kib(pid: int) -> int:
    """A process's resident set size, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_open_files() -> int:
    """Raise the soft limit of open files to the hard one; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Client:
    """One client connection: send a frame, count the text frames relayd sends."""

    def __init__(self, stream: trio.SocketStream, reader: FrameReader) -> None:
        self.stream = stream
        self.reader = reader
        self.received = 0

    async def send(self, obj: Mapping[str, object]) -> None:
        await self.stream.send_all(masked_frame(1, json.dumps(obj).encode()))

    async def read_until(self, count: int) -> None:
        """Until ``count`` text frames in all have come."""
        while self.received < count:
            self.received += await self.reader.count()


async def connect(relay: Relayd, path: str, token: str) -> Client:
    """A WebSocket connection, its handshake written by hand (loopback only)."""
    stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
    reader = await ws_handshake(stream, "127.0.0.1", relay.port, path, token)
    return Client(stream, reader)


async def connect_all(relay: Relayd, tokens: list[str]) -> list[Client]:
    """A client connection per token, ``CONNECT_AT_ONCE`` handshakes at a time."""
    clients: list[Client] = []
    limit = trio.CapacityLimiter(CONNECT_AT_ONCE)

    async def one(token: str) -> None:
        async with limit:
            clients.append(await connect(relay, CLIENT_PATH, token))

    async with trio.open_nursery() as nursery:
        for token in tokens:
            nursery.start_soon(one, token)
    return clients


async def stats_until(relay: Relayd, check: Callable[[dict[str, Any]], bool]) -> None:
    """Until ``check`` holds for relayd's ``stats`` reply."""

    async def done() -> bool:
        return check(await relay.control.request("stats"))

    await wait_until(done, interval=0.02)


async def settle_rss(pid: int) -> int:
    """relayd's RSS once it stops moving (at most 2 s)."""
    last = rss_kib(pid)
    for _ in range(20):
        await trio.sleep(0.1)
        now = rss_kib(pid)
        if now == last:
            return now
        last = now
    return last


async def run_n(n: int, source: Path | None, phase_deadline: float) -> dict[str, float]:
    """Every measurement for N clients; what did not finish in time is left out."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        args = [
            "--log-level",
            "warning",
            "--ping-interval",
            "0",  # the load generator does not read idle sockets
            "--max-connections-per-user",
            str(CLIENTS_PER_USER),
            "--client-rate",
            "1000",
        ]
        async with start_relayd(Path(tmp), args=args, source=source, metrics=False) as relay:
            pid = relay.process.pid
            users = [f"u{i}" for i in range((n + CLIENTS_PER_USER - 1) // CLIENTS_PER_USER)]
            await relay.control.assign("w1", "vm1", users)
            vm = await connect(relay, VM_PATH, relay.vm_token("vm1"))
            hello = {
                "type": "hello",
                "vmId": "vm1",
                "workspaces": [{"workspaceId": "w1", "epoch": "e1", "seq": 0}],
            }
            await vm.send(hello)
            await relay.control.next_event("vm_online")
            user_tokens = [relay.client_token(user, ttl=3600) for user in users]
            tokens = [user_tokens[i // CLIENTS_PER_USER] for i in range(n)]
            before = await settle_rss(pid)
            with trio.move_on_after(phase_deadline) as phase:
                clients = await connect_all(relay, tokens)
            if phase.cancelled_caught:
                print(f"  N={n}: the clients did not all connect in {phase_deadline} s")
                return results
            idle = await settle_rss(pid)
            results["idle_kib"] = (idle - before) / n
            subscribe = {"type": "subscribe", "workspaceId": "w1", "lastSeq": 0, "epoch": "e1"}
            with trio.move_on_after(phase_deadline):
                async with trio.open_nursery() as nursery:
                    for client in clients:
                        await client.send(subscribe)
                        nursery.start_soon(client.read_until, 1)  # the subscribed
                # At rest: a client's writer task ends once it has had nothing
                # to send for a while (relayd.peer.WRITER_LINGER).
                await trio.sleep(WRITER_LINGER + 1)
                subscribed = await settle_rss(pid)
                results["subscribed_kib"] = (subscribed - idle) / n
            seq = 0
            # Fan-out: 100 messages, one per write; twice: from rest (each
            # client's writer task starts again), then at once after it.
            for label in ("rest", "warm"):
                with trio.move_on_after(phase_deadline):
                    cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
                    async with trio.open_nursery() as nursery:
                        for client in clients:
                            nursery.start_soon(client.read_until, client.received + FANOUT_MESSAGES)
                        for _ in range(FANOUT_MESSAGES):
                            seq += 1
                            await vm.stream.send_all(masked_frame(1, frame(seq).encode()))
                    wall = time.perf_counter() - wall0
                    cpu = cpu_seconds(pid) - cpu0
                    results[f"fanout_{label}_per_s"] = n * FANOUT_MESSAGES / wall
                    results[f"fanout_{label}_us_cpu"] = cpu / (n * FANOUT_MESSAGES) * 1e6
            # Storm: all drop, 200 messages go by, all come back with lastSeq.
            last_seen = seq
            for client in clients:
                await trio.aclose_forcefully(client.stream)
            await stats_until(relay, lambda stats: not stats["connections"]["clients"])
            for _ in range(STORM_MESSAGES):
                seq += 1
                await vm.stream.send_all(masked_frame(1, frame(seq).encode()))
            await stats_until(relay, lambda stats: stats["messages"]["vmIn"] >= seq + 1)
            closed = 0
            with trio.move_on_after(phase_deadline) as phase:
                cpu0, wall0 = cpu_seconds(pid), time.perf_counter()

                async def come_back(token: str) -> None:
                    nonlocal closed
                    try:
                        client = await connect(relay, CLIENT_PATH, token)
                    except (EOFError, OSError):
                        closed += 1
                        return
                    try:
                        await client.send({**subscribe, "lastSeq": last_seen})
                        await client.read_until(1 + STORM_MESSAGES)
                    except (EOFError, OSError):
                        closed += 1
                    finally:
                        await trio.aclose_forcefully(client.stream)

                async with trio.open_nursery() as nursery:
                    for token in tokens:
                        nursery.start_soon(come_back, token)
                results["storm_s"] = time.perf_counter() - wall0
                results["storm_cpu_s"] = cpu_seconds(pid) - cpu0
                results["storm_closed"] = closed
            if phase.cancelled_caught:
                print(f"  N={n}: the storm did not settle in {phase_deadline} s")
            await trio.aclose_forcefully(vm.stream)
    return results


async def main(counts: list[int], source: Path | None, deadline: float) -> None:
    limit = raise_open_files()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"open files: soft limit {limit}; relayd from {source or 'this checkout'}")
    with trio.move_on_after(deadline) as whole:
        for n in counts:
            if n + 100 > limit:
                print(f"  N={n}: skipped (open files limit {limit})")
                continue
            r = await run_n(n, source, phase_deadline=max(60.0, n / 100))
            parts = []
            if "idle_kib" in r:
                parts.append(f"RSS {r['idle_kib']:.1f} KiB/idle client")
            if "subscribed_kib" in r:
                parts.append(f"+{r['subscribed_kib']:.1f} KiB/subscribed")
            for label in ("rest", "warm"):
                if f"fanout_{label}_per_s" in r:
                    parts.append(
                        f"fan-out from {label} {r[f'fanout_{label}_per_s']:,.0f} deliveries/s"
                        f" ({r[f'fanout_{label}_us_cpu']:.1f} us relayd CPU each)"
                    )
            if "storm_s" in r:
                parts.append(
                    f"storm caught up in {r['storm_s']:.2f} s, relayd CPU"
                    f" {r['storm_cpu_s']:.2f} s ({r['storm_closed']:.0f} closed)"
                )
            print(f"  N={n}: " + "; ".join(parts), flush=True)
    if whole.cancelled_caught:
        print(f"stopped at the {deadline} s deadline")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1000,5000,10000", help="comma-separated N")
    parser.add_argument("--source", type=Path, metavar="CHECKOUT", help="relayd of a checkout")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds for the whole run")
    options = parser.parse_args()
    trio.run(
        main,
        [int(x) for x in options.clients.split(",")],
        options.source,
        options.deadline,
    )

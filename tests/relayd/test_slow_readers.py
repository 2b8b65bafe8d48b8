"""Readers of every pace end to end: a real relayd, a fake VM, clients over loopback.

A client that keeps reading is never closed for being slower than a burst
(docs/protocol.md, "Slow readers"): a resume replays the whole log after
``lastSeq``, a reader that falls out of the log gets a fresh ``subscribed``
(mode ``snapshot``) and ``messages_snapshot`` in-band, and only a connection
that takes no bytes at all for ``--stall-timeout`` seconds is closed (4008).
Every client checks its stream as it reads it (:class:`StreamCheck`). The
VM writes its bursts in bulk and the clients have a small, fixed receive
buffer (:mod:`tests.relayd.rawpeer`), so that the kernel's socket buffers do
not hide what relayd holds for a reader.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection

from tests.relayd.fakevm import FakeVm
from tests.relayd.rawpeer import Closed, RawPeer, open_raw_peer
from tests.support.relayd import Relayd, start_relayd
from tests.support.waiting import wait_until
from wire.protocol import CLIENT_PATH, VM_PATH

#: The clients' SO_RCVBUF: the kernel then holds little of what a reader has not read.
CLIENT_RCVBUF = 32 * 1024


class StreamCheck:
    """One client's view of a workspace: gapless and duplicate-free, or it fails.

    After ``subscribed`` (mode ``replay``) the frames continue from the
    ``lastSeq`` it resumed with; after ``subscribed`` (mode ``snapshot``)
    only a ``messages_snapshot`` may come, and the frames continue from its
    ``seq``, which is never behind what the client already had.
    """

    def __init__(self, resume_from: int | None = None) -> None:
        self.seq: int | None = None
        self.resume_from = resume_from
        self.waiting = False
        self.snapshots = 0
        self.frames = 0

    def take(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "subscribed":
            if msg["mode"] == "replay":
                assert self.resume_from is not None, "a replay nobody asked for"
                self.seq = self.resume_from
            else:
                assert msg["mode"] == "snapshot", msg
                self.waiting = True
            return
        if kind == "messages_snapshot":
            assert self.waiting, "a snapshot without a subscribed before it"
            assert self.seq is None or msg["seq"] >= self.seq, "a snapshot moved the stream back"
            self.seq, self.waiting = msg["seq"], False
            self.snapshots += 1
            return
        assert kind == "claude_message", msg
        assert not self.waiting, f"seq {msg['seq']} while waiting for a snapshot"
        assert self.seq is not None, f"seq {msg['seq']} before any baseline"
        assert msg["seq"] == self.seq + 1, f"seq {msg['seq']} after {self.seq}"
        self.seq = msg["seq"]
        self.frames += 1

    async def read_until(self, peer: RawPeer, last: int, pace: float = 0.0) -> None:
        """Read until the stream reaches ``last``; ``pace`` seconds per 10 frames."""
        read = 0
        while self.seq != last or self.waiting:
            self.take(await peer.recv_json())
            read += 1
            if pace and read % 10 == 0:
                await trio.sleep(pace)


@contextlib.asynccontextmanager
async def answering_vm(relay: Relayd, **logs: tuple[str, int]) -> AsyncIterator[Vm]:
    """A VM that said hello and answers every snapshot_request at its current seq."""
    raw = await open_raw_peer(relay.host, relay.port, VM_PATH, relay.vm_token("vm1"))
    vm = Vm(cast(WebSocketConnection, raw), "vm1")
    vm.raw = raw
    await vm.hello(**logs)
    await relay.control.next_event("vm_online")
    async with trio.open_nursery() as nursery:

        async def answer() -> None:
            while True:
                request = await vm.expect("snapshot_request")
                await vm.snapshot(request["workspaceId"], request["requestId"])

        nursery.start_soon(answer)
        try:
            yield vm
        finally:
            nursery.cancel_scope.cancel()
            raw.sock.close()


class Vm(FakeVm):
    """A fake VM on a raw socket that writes its bursts in bulk."""

    raw: RawPeer

    async def burst(self, workspace_id: str, count: int, text: str = "x") -> None:
        """``count`` claude_messages, 256 frames to a write."""
        for first in range(0, count, 256):
            frames = [self.frame(workspace_id, text) for _ in range(min(256, count - first))]
            await self.raw.send_texts(frames)


@contextlib.asynccontextmanager
async def client(relay: Relayd, user: str = "u1") -> AsyncIterator[RawPeer]:
    """A client with a small, fixed receive buffer."""
    peer = await open_raw_peer(
        relay.host,
        relay.port,
        CLIENT_PATH,
        relay.client_token(user),
        receive_buffer=CLIENT_RCVBUF,
    )
    try:
        yield peer
    finally:
        peer.sock.close()


async def subscribe(peer: RawPeer, **fields: Any) -> None:
    await peer.send_json({"type": "subscribe", "workspaceId": "w1", **fields})


async def read_all(peer: RawPeer, check: StreamCheck) -> None:
    """Check every frame until the connection ends."""
    while True:
        check.take(await peer.recv_json())


async def wait_vm_frames(relay: Relayd, count: int) -> None:
    """Until relayd has read ``count`` frames from VMs (hello included)."""

    async def read_them() -> bool:
        stats = await relay.control.request("stats")
        return bool(stats["messages"]["vmIn"] >= count)

    await wait_until(read_them)


async def test_resume_after_3000_missed_messages_replays_them_all(tmp_path: Path) -> None:
    async with start_relayd(tmp_path) as relay:
        with trio.fail_after(30):
            await relay.control.assign("w1", "vm1", ["u1"])
            async with answering_vm(relay, w1=("e1", 0)) as vm:
                async with client(relay) as ws:
                    await subscribe(ws, lastSeq=0, epoch="e1")
                    check = StreamCheck(resume_from=0)
                    check.take(await ws.recv_json())
                    await vm.burst("w1", 10)
                    await check.read_until(ws, 10)
                # The phone is asleep during one long answer: 3,000 small messages.
                await vm.burst("w1", 3000)
                await wait_vm_frames(relay, 1 + 3010)
                async with client(relay) as ws:
                    await subscribe(ws, lastSeq=10, epoch="e1")
                    check = StreamCheck(resume_from=10)
                    await check.read_until(ws, 3010)
                    assert (check.frames, check.snapshots) == (3000, 0)
                    stats = await relay.control.request("stats")
                    assert stats["drops"]["slowClients"] == 0


async def test_a_steady_reader_gets_a_burst_of_4000_frames(tmp_path: Path) -> None:
    # About 1,000 frames a second, throughout a burst of 4,000 frames of 1 KB.
    count = 4000
    async with start_relayd(tmp_path) as relay:
        with trio.fail_after(30):
            await relay.control.assign("w1", "vm1", ["u1"])
            async with answering_vm(relay, w1=("e1", 0)) as vm, client(relay) as ws:
                await subscribe(ws, lastSeq=0, epoch="e1")
                check = StreamCheck(resume_from=0)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(check.read_until, ws, count, 0.01)
                    await vm.burst("w1", count, text="s" * 1000)
                assert (check.frames, check.snapshots) == (count, 0)


async def test_a_fast_reader_outrun_by_a_24_mb_burst_catches_up_in_band(tmp_path: Path) -> None:
    # 6,000 frames of 4 KB: three times the log (8 MiB). The reader takes
    # them as fast as it can; where the VM outruns it, it gets a snapshot.
    count = 6000
    async with start_relayd(tmp_path) as relay:
        with trio.fail_after(60):
            await relay.control.assign("w1", "vm1", ["u1"])
            async with answering_vm(relay, w1=("e1", 0)) as vm, client(relay) as ws:
                await subscribe(ws, lastSeq=0, epoch="e1")
                check = StreamCheck(resume_from=0)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(check.read_until, ws, count)
                    await vm.burst("w1", count, text="z" * 4000)
                assert check.seq == count
                stats = await relay.control.request("stats")
                assert stats["drops"]["slowClients"] == 0
                # Still open: relayd answers.
                await ws.send_json({"type": "subscribe", "workspaceId": "nope"})
                assert (await ws.recv_json())["code"] == "not_found"


async def test_a_reader_that_falls_out_of_the_log_gets_a_snapshot_in_band(tmp_path: Path) -> None:
    # A log of 20 frames; the client reads nothing while 200 arrive, then reads.
    args = ["--replay-messages", "20"]
    async with start_relayd(tmp_path, args=args) as relay:
        with trio.fail_after(30):
            await relay.control.assign("w1", "vm1", ["u1"])
            async with answering_vm(relay, w1=("e1", 0)) as vm, client(relay) as ws:
                await subscribe(ws, lastSeq=0, epoch="e1")
                check = StreamCheck(resume_from=0)
                check.take(await ws.recv_json())
                await vm.burst("w1", 200)
                await wait_vm_frames(relay, 201)
                await vm.burst("w1", 5)
                await check.read_until(ws, 205)
                assert check.snapshots == 1
                assert check.frames < 205
                stats = await relay.control.request("stats")
                assert stats["snapshots"]["requested"] == 1
                assert relay.metrics_url is not None
                async with httpx.AsyncClient() as http:
                    metrics = (await http.get(relay.metrics_url + "/metrics")).text
                assert "relayd_readers_fell_behind_total 1.0" in metrics


async def test_only_a_stalled_reader_is_cut_and_the_others_get_everything(tmp_path: Path) -> None:
    args = ["--stall-timeout", "1", "--replay-messages", "10"]
    count, size = 600, 32 * 1024
    async with start_relayd(tmp_path, args=args) as relay:
        with trio.fail_after(60):
            await relay.control.assign("w1", "vm1", ["u1"])
            async with (
                answering_vm(relay, w1=("e1", 0)) as vm,
                client(relay) as fast,
                client(relay) as stalled,
            ):
                for ws in (fast, stalled):
                    await subscribe(ws, lastSeq=0, epoch="e1")
                fast_check, stalled_check = StreamCheck(0), StreamCheck(0)
                stalled_check.take(await stalled.recv_json())
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(fast_check.read_until, fast, count)
                    # The client that reads nothing never slows the VM or the other one.
                    await vm.burst("w1", count, text="y" * size)
                assert fast_check.seq == count

                async def cut() -> bool:
                    stats = await relay.control.request("stats")
                    return bool(stats["drops"]["slowClients"] >= 1)

                await wait_until(cut)
                # It now reads: a valid stream (a snapshot where it fell out of
                # the log), then the close 4008.
                with pytest.raises(Closed) as closed:
                    await read_all(stalled, stalled_check)
                assert closed.value.code == 4008
                assert stalled_check.seq is None or stalled_check.seq < count

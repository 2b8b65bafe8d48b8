"""Two sessions of one workspace through the real relayd, with vmagent as a real process:
both stream at once to one client, each in order without gap or repeat, also across
a kill -9 of the agent and its restart."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import attrs
import trio
from trio_websocket import WebSocketConnection

from tests.support.relayd import recv_json, send_json, start_relayd
from tests.vmagent.test_with_relayd import ISSUE, is_delta, vmagent


@attrs.define
class Stream:
    """What one client saw of one session's log: every frame in order, no gap, no repeat."""

    seq: int | None = None
    epoch: str | None = None
    awaiting_snapshot: bool = True
    deltas: int = 0
    results: int = 0
    statuses: list[str] = attrs.Factory(list)

    def see(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "subscribed":
            # A snapshot follows (mode snapshot), or the log goes on from our place.
            self.awaiting_snapshot = frame["mode"] == "snapshot"
            return
        if kind == "messages_snapshot":
            assert self.awaiting_snapshot, "a snapshot without subscribed before it"
            self.awaiting_snapshot = False
            self.seq, self.epoch = frame["seq"], frame["epoch"]
            self.statuses.append(frame["status"])
            return
        if "seq" not in frame:
            if kind == "status":
                self.statuses.append(frame["status"])
            return
        assert not self.awaiting_snapshot, f"seq {frame['seq']} before the snapshot"
        assert frame["epoch"] == self.epoch
        assert frame["seq"] == (self.seq or 0) + 1, (self.seq, frame["seq"])
        self.seq = frame["seq"]
        self.deltas += is_delta(frame)
        if kind == "claude_message" and frame["data"]["type"] == "result":
            self.results += 1
        if kind == "status":
            self.statuses.append(frame["status"])


async def read_into(client: WebSocketConnection, streams: dict[str, Stream]) -> dict[str, Any]:
    """One frame from relayd, checked against its session's stream."""
    frame = await recv_json(client)
    sid = frame.get("sessionId", "main")
    if frame["type"] in ("reply", "error") or sid not in streams:
        return frame
    streams[sid].see(frame)
    return frame


def say(sid: str, cid: str, text: str) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "user_message", "workspaceId": "ws1"}
    if sid != "main":
        body["sessionId"] = sid
    return {**body, "clientMessageId": cid, "text": text}


async def test_two_sessions_through_relayd_and_a_restart(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_relayd(tmp_path) as relay:
            await relay.control.assign("ws1", "vm1", ["u1"], ISSUE)
            streams = {"main": Stream()}
            async with (
                vmagent(tmp_path, relay, "--demo-delay", "0.01") as first,
                relay.connect_client("u1") as client,
            ):
                await relay.control.next_event("vm_online")
                await send_json(client, {"type": "subscribe", "workspaceId": "ws1"})
                await send_json(
                    client,
                    {
                        "type": "request",
                        "workspaceId": "ws1",
                        "requestId": "r1",
                        "op": "session_create",
                        "args": {"title": "Second"},
                    },
                )
                while True:
                    frame = await read_into(client, streams)
                    if frame["type"] == "reply":
                        break
                sid = frame["result"]["sessionId"]
                streams[sid] = Stream()
                await send_json(
                    client, {"type": "subscribe", "workspaceId": "ws1", "sessionId": sid}
                )
                await send_json(client, say("main", "c1", "a long reply please"))
                await send_json(client, say(sid, "c2", "a long one here too"))
                while min(s.deltas for s in streams.values()) < 20:
                    await read_into(client, streams)
                first.send_signal(signal.SIGKILL)
                await first.wait()
                while any("offline" not in s.statuses for s in streams.values()):
                    await read_into(client, streams)

                # Back: each session's stream goes on (or starts over from a snapshot).
                async with vmagent(tmp_path, relay, "--demo-delay", "0.001"):
                    while any(s.statuses[-1] != "idle" for s in streams.values()):
                        await read_into(client, streams)
                    await send_json(client, say(sid, "c3", "and now?"))
                    await send_json(client, say("main", "c4", "hello again"))
                    while any(s.results < 1 for s in streams.values()):
                        await read_into(client, streams)
            assert streams["main"].epoch != streams[sid].epoch

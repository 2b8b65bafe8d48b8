"""vmagent as a real process against the real relayd: kill -9, restart, carry on."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection

from tests.support.fake_anthropic import FakeAnthropic, Reply, text
from tests.support.relayd import Relayd, recv_json, recv_until, send_json, start_relayd
from tests.vmagent.gitrepo import git, make_origin

REPO = Path(__file__).resolve().parents[2]
ISSUE = {
    "url": "https://github.com/o/r/issues/3",
    "owner": "o",
    "repo": "r",
    "number": 3,
    "title": "t",
}


@contextlib.asynccontextmanager
async def vmagent(
    tmp_path: Path, relay: Relayd, *extra: str, env: dict[str, str] | None = None
) -> AsyncIterator[trio.Process]:
    token_file = tmp_path / "vm.token"
    token_file.write_text(relay.vm_token("vm1") + "\n")
    argv = [
        sys.executable,
        "-m",
        "vmagent",
        "--relay-url",
        relay.url,
        "--token-file",
        str(token_file),
        "--state-dir",
        str(tmp_path / "state"),
        "--backoff-initial",
        "0.05",
        "--backoff-max",
        "0.2",
        *extra,
    ]
    if "--engine" not in extra:
        argv += ["--engine", "demo", "--no-clone"]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("VMAGENT_")}
    child_env.update(env or {})
    log_file = (tmp_path / "vmagent.log").open("ab")
    process = await trio.lowlevel.open_process(argv, env=child_env, cwd=str(REPO), stderr=log_file)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
        log_file.close()


def is_delta(frame: dict[str, Any]) -> bool:
    return (
        frame.get("type") == "claude_message"
        and frame["data"]["type"] == "stream_event"
        and frame["data"]["event"]["type"] == "content_block_delta"
    )


async def subscribe(client: WebSocketConnection) -> dict[str, Any]:
    await send_json(client, {"type": "subscribe", "workspaceId": "ws1"})
    frames = await recv_until(client, lambda f: f["type"] == "messages_snapshot")
    assert frames[0]["type"] == "subscribed"
    return frames[-1]


async def test_kill_9_mid_stream_loses_nothing(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_relayd(tmp_path) as relay:
            await relay.control.assign("ws1", "vm1", ["u1"], ISSUE)
            seen: dict[int, dict[str, Any]] = {}
            async with vmagent(tmp_path, relay, "--demo-delay", "0.02") as first:
                await relay.control.next_event("vm_online")
                async with relay.connect_client("u1") as client:
                    snap = await subscribe(client)
                    epoch = snap["epoch"]
                    for m in snap["messages"]:
                        seen[m["seq"]] = m
                    await send_json(
                        client,
                        {
                            "type": "user_message",
                            "workspaceId": "ws1",
                            "clientMessageId": "c1",
                            "text": "a long reply please",
                        },
                    )
                    deltas = 0
                    while deltas < 30:
                        frame = await recv_json(client)
                        if "seq" in frame:
                            assert frame["seq"] not in seen
                            seen[frame["seq"]] = frame
                        deltas += is_delta(frame)
                    first.send_signal(signal.SIGKILL)
                    await first.wait()
                    await recv_until(client, lambda f: f.get("status") == "offline")
            assert any(
                m["type"] == "user_message" and m["clientMessageId"] == "c1" for m in seen.values()
            )

            async with vmagent(tmp_path, relay, "--demo-delay", "0.001"):
                await relay.control.next_event("vm_online")
                async with relay.connect_client("u1") as client:
                    snap = await subscribe(client)
                    assert snap["epoch"] == epoch
                    assert snap["seq"] >= max(seen)
                    by_seq = {m["seq"]: m for m in snap["messages"]}
                    # Everything seen live is in the snapshot, as it was sent.
                    for seq, message in seen.items():
                        assert by_seq[seq] == message
                    assert snap["pending"] == []
                    # The turn cut short is reported; the agent is ready again.
                    assert snap["status"] == "idle"
                    assert "restarted" in snap.get("statusDetail", "")

                    # A resend of the accepted message is not a second message.
                    await send_json(
                        client,
                        {
                            "type": "user_message",
                            "workspaceId": "ws1",
                            "clientMessageId": "c1",
                            "text": "a long reply please",
                        },
                    )
                    error = await recv_json(client)
                    assert (error["type"], error["ref"]) == ("error", "c1")

                    # The conversation goes on.
                    await send_json(
                        client,
                        {
                            "type": "user_message",
                            "workspaceId": "ws1",
                            "clientMessageId": "c2",
                            "text": "hello again",
                        },
                    )
                    frames = await recv_until(
                        client,
                        lambda f: (
                            f.get("type") == "claude_message" and f["data"]["type"] == "result"
                        ),
                    )
                    seqs = [f["seq"] for f in frames if "seq" in f]
                    assert seqs == list(range(snap["seq"] + 1, snap["seq"] + 1 + len(seqs)))
                    assert frames[-1]["data"]["subtype"] == "success"


async def test_bad_input_through_relayd_gets_an_error(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with start_relayd(tmp_path) as relay:
            await relay.control.assign("ws1", "vm1", ["u1"], ISSUE)
            async with vmagent(tmp_path, relay, "--demo-delay", "0"):
                await relay.control.next_event("vm_online")
                async with relay.connect_client("u1") as client:
                    await subscribe(client)
                    await send_json(
                        client,
                        {
                            "type": "user_message",
                            "workspaceId": "ws1",
                            "clientMessageId": "c1",
                            "text": "permission",
                        },
                    )
                    frames = await recv_until(client, lambda f: f["type"] == "permission_request")
                    request_id = frames[-1]["requestId"]
                    await send_json(
                        client,
                        {
                            "type": "permission_response",
                            "workspaceId": "ws1",
                            "requestId": request_id,
                            "allow": True,
                        },
                    )
                    await recv_until(
                        client,
                        lambda f: (
                            f.get("type") == "claude_message" and f["data"]["type"] == "result"
                        ),
                    )
                    await recv_until(client, lambda f: f.get("status") == "idle")
                    await send_json(
                        client,
                        {
                            "type": "permission_response",
                            "workspaceId": "ws1",
                            "requestId": request_id,
                            "allow": False,
                        },
                    )
                    error = await recv_json(client)
                    assert (error["type"], error["code"], error["ref"]) == (
                        "error",
                        "already_resolved",
                        request_id,
                    )
                    await send_json(
                        client,
                        {
                            "type": "question_response",
                            "workspaceId": "ws1",
                            "requestId": "q_nope",
                            "answers": {},
                        },
                    )
                    error = await recv_json(client)
                    assert (error["code"], error["ref"]) == ("not_found", "q_nope")
                    # Nothing else came: the next thing is the answer to a new message.
                    await send_json(
                        client,
                        {
                            "type": "user_message",
                            "workspaceId": "ws1",
                            "clientMessageId": "c2",
                            "text": "hi",
                        },
                    )
                    echo = await recv_json(client)
                    assert (echo["type"], echo["clientMessageId"]) == ("user_message", "c2")


async def test_sd_notify_and_sigterm(tmp_path: Path) -> None:
    with trio.fail_after(30):
        sockdir = Path(tempfile.mkdtemp(prefix="vm-", dir="/tmp"))
        notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        await notify.bind(str(sockdir / "notify"))
        try:
            async with start_relayd(tmp_path) as relay:
                env = {"NOTIFY_SOCKET": str(sockdir / "notify"), "WATCHDOG_USEC": "200000"}
                async with vmagent(tmp_path, relay, env=env) as process:
                    states: list[str] = []
                    while "READY=1" not in states or "WATCHDOG=1" not in states:
                        states.append((await notify.recv(4096)).decode())
                    # WATCHDOG_PID is unset, so any pid may ping; the agent is live.
                    await relay.control.next_event("vm_online")
                    process.send_signal(signal.SIGTERM)
                    while "STOPPING=1" not in states:
                        states.append((await notify.recv(4096)).decode())
                    assert await process.wait() == 0
                    await relay.control.next_event("vm_offline")
            # Logs are JSON lines and never carry the token.
            lines = (tmp_path / "vmagent.log").read_text().splitlines()
            records = [json.loads(line) for line in lines]
            assert any(r["msg"] == "connected to relay" for r in records)
            token = (tmp_path / "vm.token").read_text().strip()
            assert all(token not in line for line in lines)
        finally:
            notify.close()
            shutil.rmtree(sockdir, ignore_errors=True)


@pytest.mark.claude
async def test_claude_engine_process_clones_and_answers(tmp_path: Path) -> None:
    origin = make_origin(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            fake = await nursery.start(FakeAnthropic().run)
            fake.push(Reply([text("Hello from Claude Code.")]))
            async with start_relayd(tmp_path) as relay:
                await relay.control.assign(
                    "ws1", "vm1", ["u1"], {**ISSUE, "body": "Make it faster."}
                )
                env = {
                    "HOME": str(home),
                    "ANTHROPIC_BASE_URL": fake.url,
                    "ANTHROPIC_API_KEY": "sk-fake",
                    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                }
                # --clone is the claude engine's default.
                async with vmagent(
                    tmp_path, relay, "--engine", "claude", "--git-base-url", origin, env=env
                ):
                    await relay.control.next_event("vm_online")
                    async with relay.connect_client("u1") as client:
                        snap = await subscribe(client)
                        if snap["status"] != "idle":
                            await recv_until(client, lambda f: f.get("status") == "idle")
                        work = tmp_path / "state" / "workspaces" / "ws1" / "work"
                        assert (
                            git("rev-parse", "--abbrev-ref", "HEAD", cwd=work).strip()
                            == "ff/issue-3"
                        )
                        await send_json(
                            client,
                            {
                                "type": "user_message",
                                "workspaceId": "ws1",
                                "clientMessageId": "c1",
                                "text": "hi",
                            },
                        )
                        frames = await recv_until(
                            client,
                            lambda f: (
                                f.get("type") == "claude_message" and f["data"]["type"] == "result"
                            ),
                        )
                        init = next(
                            f["data"]
                            for f in frames
                            if f.get("type") == "claude_message" and f["data"]["type"] == "system"
                        )
                        assert init["cwd"] == str(work)
                        assert frames[-1]["data"]["result"] == "Hello from Claude Code."
                        # Claude was told about the issue.
                        request = await fake.wait_for_conversation(1)
                        assert "Make it faster." in json.dumps(request["system"])
                        assert str(ISSUE["url"]) in json.dumps(request["system"])
            nursery.cancel_scope.cancel()


async def test_a_viewer_across_the_restart_sees_no_gap(tmp_path: Path) -> None:
    """A client that stays subscribed while the VM dies and returns misses nothing."""
    with trio.fail_after(60):
        async with start_relayd(tmp_path) as relay:
            await relay.control.assign("ws1", "vm1", ["u1"], ISSUE)
            frames: list[dict[str, Any]] = []
            arrived = [trio.Event()]

            async def wait_for(predicate: Any) -> None:
                while not any(predicate(f) for f in frames):
                    await arrived[0].wait()

            async with relay.connect_client("u1") as watcher, trio.open_nursery() as nursery:

                async def collect() -> None:
                    while True:
                        frames.append(await recv_json(watcher))
                        arrived[0].set()
                        arrived[0] = trio.Event()

                nursery.start_soon(collect)
                async with vmagent(tmp_path, relay, "--demo-delay", "0.02") as first:
                    await relay.control.next_event("vm_online")
                    await send_json(watcher, {"type": "subscribe", "workspaceId": "ws1"})
                    await wait_for(lambda f: f["type"] == "messages_snapshot")
                    message = {"type": "user_message", "workspaceId": "ws1", "text": "long"}
                    await send_json(watcher, {**message, "clientMessageId": "c1"})
                    while sum(map(is_delta, frames)) < 20:
                        await arrived[0].wait()
                    first.send_signal(signal.SIGKILL)
                    await first.wait()
                    await wait_for(lambda f: f.get("status") == "offline")
                async with vmagent(tmp_path, relay, "--demo-delay", "0.001"):
                    await relay.control.next_event("vm_online")
                    await wait_for(lambda f: f.get("status") == "idle")
                    await send_json(watcher, {**message, "clientMessageId": "c2", "text": "hi"})
                    await wait_for(
                        lambda f: (
                            f.get("type") == "claude_message"
                            and f["data"]["type"] == "result"
                            and f["data"]["subtype"] == "success"
                        )
                    )
                nursery.cancel_scope.cancel()

            # In order, no gap, nothing twice: each snapshot covers up to its seq,
            # every other sequenced frame is the next one.
            last = 0
            snapshots = 0
            for frame in frames:
                if frame["type"] == "messages_snapshot":
                    assert frame["seq"] >= last
                    last = frame["seq"]
                    snapshots += 1
                elif "seq" in frame:
                    assert frame["seq"] == last + 1, frame
                    last = frame["seq"]
            assert snapshots >= 1
            echoes = [f["clientMessageId"] for f in frames if f["type"] == "user_message"]
            assert echoes == ["c1", "c2"]

"""Panels' requests end to end: a client, the real relayd, a real vmagent (demo engine,
its small real repository): replies reach the asking connection alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from tests.support.relayd import recv_until, send_json, start_relayd
from tests.vmagent.test_with_relayd import ISSUE, subscribe, vmagent


async def ask(client: WebSocketConnection, rid: str, op: str, **args: Any) -> dict[str, Any]:
    await send_json(
        client, {"type": "request", "workspaceId": "ws1", "requestId": rid, "op": op, "args": args}
    )
    frames = await recv_until(client, lambda f: answers(f, rid))
    return frames[-1]


def answers(frame: dict[str, Any], rid: str) -> bool:
    """A reply to ``rid``, or an error about it."""
    if frame["type"] == "reply":
        return bool(frame["requestId"] == rid)
    return frame["type"] == "error" and frame.get("ref") == rid


async def test_changes_diff_files_and_file_through_relayd(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with start_relayd(tmp_path) as relay:
            await relay.control.assign("ws1", "vm1", ["u1", "u2"], ISSUE)
            async with vmagent(tmp_path, relay, "--demo-delay", "0"):
                await relay.control.next_event("vm_online")
                async with relay.connect_client("u1") as a, relay.connect_client("u2") as b:
                    snap = await subscribe(a)
                    await subscribe(b)
                    if snap["status"] != "idle":
                        # Idle once the engine opened, so its repository is made.
                        await recv_until(a, lambda f: f.get("status") == "idle")
                    changes = await ask(a, "r1", "changes")
                    assert changes["ok"] is True
                    assert "seq" not in changes
                    files = {f["path"]: f for f in changes["result"]["files"]}
                    assert changes["result"]["branch"] == "ff/issue-3"
                    assert files["README.md"]["uncommitted"] is True
                    assert files["src/app.py"]["unpushed"] is True
                    diff = await ask(a, "r2", "diff", path="src/app.py")
                    assert "+def bye()" in diff["result"]["diff"]
                    tree = await ask(a, "r3", "files")
                    assert tree["result"]["files"] == [
                        ".claude/commands/explain.md",
                        ".gitignore",
                        "README.md",
                        "src/app.py",
                    ]
                    text = await ask(a, "r4", "file", path="src/app.py")
                    assert "def greet" in text["result"]["content"]
                    refused = await ask(a, "r5", "file", path="../vm.token")
                    assert refused["ok"] is False
                    assert refused["error"]["code"] == "bad_request"
                    unknown = await ask(a, "r6", "rm", path="x")
                    assert unknown["error"]["code"] == "unknown_type"
                    # The demo's "edit" changes the tree; changes shows it after the result.
                    await send_json(
                        a,
                        {
                            "type": "user_message",
                            "workspaceId": "ws1",
                            "clientMessageId": "c1",
                            "text": "edit please",
                        },
                    )
                    await recv_until(
                        a,
                        lambda f: f["type"] == "claude_message" and f["data"]["type"] == "result",
                    )
                    after = await ask(a, "r7", "changes")
                    assert "notes.md" in {f["path"] for f in after["result"]["files"]}
                    # Commit & push work in the demo: its origin is a bare repository
                    # in the workspace's own directory.
                    committed = await ask(a, "r8", "commit", message="Demo notes")
                    assert committed["ok"] is True, committed
                    pushed = await ask(a, "r9", "push")
                    assert pushed["ok"] is True, pushed
                    assert pushed["result"]["commit"] == committed["result"]["commit"]
                    clean = await ask(a, "r10", "changes")
                    assert not any(f["unpushed"] for f in clean["result"]["files"])
                    # b saw the conversation but none of a's replies.
                    await send_json(
                        b,
                        {"type": "request", "workspaceId": "ws1", "requestId": "b1", "op": "files"},
                    )
                    seen = await recv_until(b, lambda f: f["type"] == "reply")
                    assert [f["requestId"] for f in seen if f["type"] == "reply"] == ["b1"]
                    # A client's reconnect replays the log: no reply is in it.
                async with relay.connect_client("u1") as again:
                    await send_json(
                        again,
                        {"type": "subscribe", "workspaceId": "ws1", "lastSeq": 0, "epoch": "x"},
                    )
                    fresh = await recv_until(again, lambda f: f["type"] == "messages_snapshot")
                    assert all(f["type"] != "reply" for f in fresh)
                    assert "connectionId" not in str(fresh[-1]["messages"])

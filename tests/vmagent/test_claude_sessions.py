"""Two sessions of one workspace with the real Claude Code CLI against a fake Messages API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.fake_anthropic import FakeAnthropic, Reply, text
from tests.vmagent.fakerelay import FakeRelay, VmConn, assign
from tests.vmagent.test_claude_engine import DEADLINE, claude_data, make_agent, start
from vmagent.engines.claude import ClaudeSession

pytestmark = pytest.mark.claude


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeAnthropic]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(FakeAnthropic().run)
        nursery.cancel_scope.cancel()


async def turn_in(conn: VmConn, sid: str | None, cid: str, words: str) -> list[dict[str, Any]]:
    """Send a message to one session; that session's frames up to its turn's result."""
    body: dict[str, Any] = {
        "type": "user_message",
        "workspaceId": "ws1",
        "clientMessageId": cid,
        "text": words,
        "userId": "u1",
    }
    if sid is not None:
        body["sessionId"] = sid
    await conn.send(body)
    frames: list[dict[str, Any]] = []
    while True:
        frame = await conn.recv()
        if frame.get("sessionId") != sid:
            continue
        frames.append(frame)
        if frame["type"] == "claude_message" and frame["data"]["type"] == "result":
            return frames


def init_of(frames: list[dict[str, Any]]) -> dict[str, Any]:
    [init] = [d for d in claude_data(frames, "system") if d.get("subtype") == "init"]
    return init


async def test_two_sessions_are_two_claude_sessions(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay, fake_api)
            conn = await start(nursery, agent, relay)
            await assign(conn)
            fake_api.push(Reply([text("Main here: apples.")]))
            main_frames = await turn_in(conn, None, "c1", "remember the word apples")
            await conn.send(
                {
                    "type": "request",
                    "workspaceId": "ws1",
                    "requestId": "r1",
                    "op": "session_create",
                    "args": {"title": "Other"},
                    "userId": "u1",
                    "connectionId": "k1",
                }
            )
            reply, _ = await conn.until("reply", requestId="r1")
            sid = reply["result"]["sessionId"]
            await conn.until("status", sessionId=sid, status="idle")
            fake_api.push(Reply([text("Second here: pears.")]))
            second_frames = await turn_in(conn, sid, "c2", "remember the word pears")
            # Two Claude Code sessions: each init line names its own.
            main_session, other_session = (
                init_of(main_frames)["session_id"],
                init_of(second_frames)["session_id"],
            )
            assert main_session != other_session
            assert claude_data(second_frames, "result")[-1]["session_id"] == other_session
            # The API saw two separate conversations, each with its own history only.
            first = json.dumps((await fake_api.wait_for_conversation(1))["messages"])
            second = json.dumps((await fake_api.wait_for_conversation(2))["messages"])
            assert "apples" in first
            assert "pears" not in first
            assert "pears" in second
            assert "apples" not in second
            # main knows the issue; a new session starts with no prompt of its own.
            assert "issue #7" in json.dumps(fake_api.conversation[0]["system"])
            assert "issue #7" not in json.dumps(fake_api.conversation[1]["system"])
            # main goes on in its own session.
            fake_api.push(Reply([text("Still apples.")]))
            again = await turn_in(conn, None, "c3", "which word")
            assert init_of(again)["session_id"] == main_session
            third = json.dumps((await fake_api.wait_for_conversation(3))["messages"])
            assert "apples" in third
            assert "pears" not in third
            # Closing the second session ends its Claude Code process, not main's.
            workspace = agent.workspaces["ws1"]
            procs = {
                key: engine._proc
                for key, engine in (
                    ("main", workspace.open["main"]._engine_session),
                    (sid, workspace.open[sid]._engine_session),
                )
                if isinstance(engine, ClaudeSession)
            }
            assert set(procs) == {"main", sid}
            await conn.send(
                {
                    "type": "request",
                    "workspaceId": "ws1",
                    "sessionId": sid,
                    "requestId": "r2",
                    "op": "session_close",
                    "userId": "u1",
                    "connectionId": "k1",
                }
            )
            await conn.until("status", sessionId=sid, status="stopped")
            other_proc, main_proc = procs[sid], procs["main"]
            assert other_proc is not None
            assert main_proc is not None
            assert other_proc.returncode is not None
            assert main_proc.returncode is None
            nursery.cancel_scope.cancel()

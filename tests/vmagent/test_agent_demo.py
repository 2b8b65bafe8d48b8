"""The agent with the demo engine against a small relay on loopback."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.vmagent.fakerelay import (
    ISSUE,
    FakeRelay,
    VmConn,
    agent_for,
    assign,
    say,
    snapshot,
    turn_frames,
)
from vmagent.agent import Agent
from vmagent.engines.demo import DEMO_QUESTIONS, DemoEngine
from wire.envelope import read_envelope


def make_agent(
    tmp_path: Path, relay: FakeRelay, token: str = "tok.en.x", word_delay: float = 0
) -> Agent:
    return agent_for(relay, tmp_path, DemoEngine(word_delay=word_delay), token)


@contextlib.asynccontextmanager
async def assigned_agent(
    tmp_path: Path, relay: FakeRelay, word_delay: float = 0
) -> AsyncIterator[VmConn]:
    """A demo agent on the fake relay, its hello read and ws1 assigned; stopped on exit."""
    async with trio.open_nursery() as nursery:
        await nursery.start(make_agent(tmp_path, relay, word_delay=word_delay).run)
        conn = await relay.accept()
        await conn.recv()
        await assign(conn)
        yield conn
        nursery.cancel_scope.cancel()


async def test_hello_reply_and_sequence(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay, token="header.payload.sig")
            await nursery.start(agent.run)
            conn = await relay.accept()
            assert conn.path == "/v1/vm"
            assert conn.headers["authorization"] == "Bearer header.payload.sig"
            assert "ffcloud.v1" in conn.subprotocols
            hello = await conn.recv()
            assert hello["type"] == "hello"
            assert hello["workspaces"] == []
            assert isinstance(hello["agentVersion"], str)

            await conn.send({"type": "workspace_assigned", "workspaceId": "ws1", "issue": ISSUE})
            raws = []
            while True:
                raw = await conn.recv_raw()
                raws.append(raw)
                if json.loads(raw).get("status") == "idle":
                    break
            await conn.send(
                {
                    "type": "user_message",
                    "workspaceId": "ws1",
                    "clientMessageId": "c1",
                    "text": "hello there",
                    "userId": "u1",
                }
            )
            while True:
                raw = await conn.recv_raw()
                raws.append(raw)
                body = json.loads(raw)
                if body.get("type") == "status" and body["status"] == "idle":
                    break
            bodies = [json.loads(r) for r in raws]
            # Every frame is sequenced, gap-free, with the envelope first.
            assert [b["seq"] for b in bodies] == list(range(1, len(bodies) + 1))
            assert len({b["epoch"] for b in bodies}) == 1
            for raw in raws:
                env = read_envelope(raw)
                assert env.body is None  # the relay's fast path reads it
            kinds = [
                b["type"] if b["type"] != "claude_message" else b["data"]["type"] for b in bodies
            ]
            assert kinds[:2] == ["status", "status"]  # starting, idle
            assert kinds[2:5] == ["user_message", "status", "system"]
            assert kinds[-2:] == ["result", "status"]
            echo = bodies[2]
            assert (echo["clientMessageId"], echo["userId"], echo["text"]) == (
                "c1",
                "u1",
                "hello there",
            )
            text = "".join(
                b["data"]["event"]["delta"].get("text", "")
                for b in bodies
                if b["type"] == "claude_message"
                and b["data"]["type"] == "stream_event"
                and b["data"]["event"]["type"] == "content_block_delta"
            )
            assert "demo engine, not Claude" in text
            assert "hello there" in text
            result = bodies[-2]["data"]
            assert result["subtype"] == "success"
            assert isinstance(result["duration_ms"], int)
            assert "total_cost_usd" in result
            assert "usage" in result
            # As Claude Code does: the model's context window in modelUsage, and the
            # prompt (the context in use) in each assistant line's usage.
            assert result["modelUsage"]["demo"]["contextWindow"] == 200_000
            prompts = [
                b["data"]["message"]["usage"]["input_tokens"]
                for b in bodies
                if b["type"] == "claude_message" and b["data"]["type"] == "assistant"
            ]
            assert prompts
            assert all(p == 3_000 + 2 for p in prompts)  # the base prompt, "hello there"
            nursery.cancel_scope.cancel()


async def test_question_first_answer_wins(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(10):
        async with assigned_agent(tmp_path, relay) as conn:
            await say(conn, "ask me a question", "c1")
            question, before = await conn.until("user_question")
            assert [q["multiSelect"] for q in question["questions"]] == [False, True]
            tool_uses = [
                b
                for b in before
                if b["type"] == "claude_message"
                and b["data"]["type"] == "assistant"
                and b["data"]["message"]["content"][0]["type"] == "tool_use"
            ]
            assert tool_uses[0]["data"]["message"]["content"][0]["name"] == "AskUserQuestion"
            status = await conn.recv()
            assert status["status"] == "waiting_for_input"
            q1, q2 = (q["question"] for q in DEMO_QUESTIONS)
            answer = {
                "type": "question_response",
                "workspaceId": "ws1",
                "requestId": question["requestId"],
                "answers": {q1: "Teal", q2: ["Dark mode", "Sounds"]},
                "userId": "u2",
            }
            await conn.send(answer)
            resolved = await conn.recv()
            assert resolved["type"] == "request_resolved"
            assert (resolved["requestId"], resolved["resolution"], resolved["userId"]) == (
                question["requestId"],
                "answered",
                "u2",
            )
            await conn.send({**answer, "userId": "u3"})
            frames = await turn_frames(conn)
            errors = [f for f in frames if f["type"] == "error"]
            assert [(e["code"], e["ref"]) for e in errors] == [
                ("already_resolved", question["requestId"])
            ]
            texts = [
                f["data"]["message"]["content"][0].get("text", "")
                for f in frames
                if f["type"] == "claude_message" and f["data"]["type"] == "assistant"
            ]
            assert any("Teal" in t and "Dark mode, Sounds" in t for t in texts)
            results = [
                f for f in frames if f["type"] == "claude_message" and f["data"]["type"] == "user"
            ]
            assert results[0]["data"]["message"]["content"][0]["type"] == "tool_result"


@pytest.mark.parametrize("allow", [True, False])
async def test_permission_allowed_and_denied(tmp_path: Path, relay: FakeRelay, allow: bool) -> None:
    with trio.fail_after(10):
        async with assigned_agent(tmp_path, relay) as conn:
            await say(conn, "please use a tool that needs permission", "c1")
            request, _ = await conn.until("permission_request")
            assert request["toolName"] == "RollDice"
            assert request["toolInput"]["sides"] == 20
            assert request["toolUseId"].startswith("toolu_")
            await conn.send(
                {
                    "type": "permission_response",
                    "workspaceId": "ws1",
                    "requestId": request["requestId"],
                    "allow": allow,
                    "message": "not today",
                    "userId": "u1",
                }
            )
            resolved, _ = await conn.until("request_resolved")
            assert resolved["resolution"] == ("allowed" if allow else "denied")
            frames = await turn_frames(conn)
            tool_result = next(
                f["data"]["message"]["content"][0]
                for f in frames
                if f["type"] == "claude_message" and f["data"]["type"] == "user"
            )
            assert tool_result["is_error"] is (not allow)
            final = frames[-1]["data"]["result"]
            if allow:
                assert "The die shows" in final
            else:
                assert "not today" in final


async def test_interrupt_stops_a_long_reply(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(10):
        async with assigned_agent(tmp_path, relay, word_delay=0.01) as conn:
            await say(conn, "a long one please", "c1")
            await conn.until("claude_message")  # streaming has begun
            await conn.send({"type": "interrupt", "workspaceId": "ws1", "userId": "u1"})
            frames = await turn_frames(conn)
            assert frames[-1]["data"]["subtype"] == "error_during_execution"
            assert len(frames) < 400  # far fewer than the whole reply's words
            # Closed as Claude Code closes an interrupted turn.
            tail = [f["data"] for f in frames[-7:] if f["type"] == "claude_message"]
            kinds = [d["type"] if d["type"] != "stream_event" else d["event"]["type"] for d in tail]
            assert kinds[-6:] == [
                "assistant",
                "user",
                "content_block_stop",
                "message_delta",
                "message_stop",
                "result",
            ]
            assert tail[-6]["aborted"] is True
            assert tail[-5]["message"]["content"][0]["text"] == "[Request interrupted by user]"
            # The snapshot keeps the partial message: its assistant line is there.
            snap = await snapshot(conn)
            assert any(
                m["type"] == "claude_message" and m["data"].get("aborted") for m in snap["messages"]
            )
            # The conversation goes on.
            await say(conn, "hi again", "c2")
            frames = await turn_frames(conn)
            assert frames[-1]["data"]["subtype"] == "success"


async def test_bad_input_gets_one_error_and_nothing_else(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(10):
        async with assigned_agent(tmp_path, relay) as conn:
            await say(conn, "hi", "c1")
            await turn_frames(conn)
            await conn.until("status", status="idle")
            await say(conn, "permission", "c2")
            request, _ = await conn.until("permission_request")
            await conn.until("status", status="waiting_for_input")
            await conn.send(
                {
                    "type": "permission_response",
                    "workspaceId": "ws1",
                    "requestId": request["requestId"],
                    "allow": True,
                    "userId": "u1",
                }
            )
            await turn_frames(conn)
            await conn.until("status", status="idle")

            probe = 0

            async def expect_only_error(
                bad: dict[str, Any] | str | bytes, code: str
            ) -> dict[str, Any]:
                nonlocal probe
                probe += 1
                if isinstance(bad, bytes):
                    await conn.ws.send_message(bad)
                else:
                    await conn.send(bad)
                await conn.send(
                    {"type": "snapshot_request", "workspaceId": "ws1", "requestId": f"probe{probe}"}
                )
                error = await conn.recv()
                assert error["type"] == "error", error
                assert error["code"] == code
                snapshot = await conn.recv()
                assert snapshot["type"] == "messages_snapshot"
                assert snapshot["requestId"] == f"probe{probe}"
                return error

            err = await expect_only_error(
                {
                    "type": "user_message",
                    "workspaceId": "nope",
                    "clientMessageId": "c9",
                    "text": "x",
                    "userId": "u1",
                },
                "not_found",
            )
            assert err["workspaceId"] == "nope"
            assert err["ref"] == "c9"
            await expect_only_error("{not json", "bad_request")
            await expect_only_error(b"\x00binary", "bad_request")
            await expect_only_error({"type": "teleport", "workspaceId": "ws1"}, "unknown_type")
            await expect_only_error(
                {"type": "user_message", "workspaceId": "ws1", "clientMessageId": "c3", "text": 5},
                "bad_request",
            )
            err = await expect_only_error(
                {
                    "type": "user_message",
                    "workspaceId": "ws1",
                    "clientMessageId": "c1",
                    "text": "again",
                    "userId": "u1",
                },
                "bad_request",
            )
            assert err["ref"] == "c1"
            err = await expect_only_error(
                {
                    "type": "permission_response",
                    "workspaceId": "ws1",
                    "requestId": request["requestId"],
                    "allow": False,
                    "userId": "u2",
                },
                "already_resolved",
            )
            assert err["ref"] == request["requestId"]
            await expect_only_error(
                {
                    "type": "question_response",
                    "workspaceId": "ws1",
                    "requestId": "q_unknown",
                    "answers": {},
                    "userId": "u2",
                },
                "not_found",
            )
            await expect_only_error(
                {"type": "workspace_assigned", "workspaceId": "../etc", "issue": ISSUE},
                "bad_request",
            )
            await expect_only_error(
                {"type": "workspace_assigned", "workspaceId": "ws2", "issue": {"url": 1}},
                "bad_request",
            )
            # None of it reached the log.
            snap = await snapshot(conn)
            texts = [m.get("text") for m in snap["messages"] if m["type"] == "user_message"]
            assert texts == ["hi", "permission"]


async def test_reconnect_and_restart_keep_the_log(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay)
            await nursery.start(agent.run)
            conn = await relay.accept()
            await conn.recv()
            await assign(conn)
            echo = await say(conn, "hi", "c1")
            await turn_frames(conn)
            await conn.until("status", status="idle")
            before = await snapshot(conn)
            assert before["seq"] > echo["seq"]
            assert before["status"] == "idle"

            # The relay drops the connection: the agent dials again and says where it is.
            await conn.close()
            conn = await relay.accept()
            hello = await conn.recv()
            assert hello["workspaces"] == [
                {
                    "workspaceId": "ws1",
                    "epoch": before["epoch"],
                    "seq": before["seq"],
                    "status": "idle",
                }
            ]
            # A repeated assignment is a no-op.
            await conn.send({"type": "workspace_assigned", "workspaceId": "ws1", "issue": ISSUE})
            assert await snapshot(conn) == before
            nursery.cancel_scope.cancel()

        # A new agent process on the same state directory.
        async with trio.open_nursery() as nursery:
            await nursery.start(make_agent(tmp_path, relay).run)
            conn = await relay.accept()
            hello = await conn.recv()
            assert hello["workspaces"] == [
                {
                    "workspaceId": "ws1",
                    "epoch": before["epoch"],
                    "seq": before["seq"],
                    "status": "idle",
                }
            ]
            again = await snapshot(conn)
            assert again["messages"] == before["messages"]
            # Resending the accepted message is not a second message.
            await conn.send(
                {
                    "type": "user_message",
                    "workspaceId": "ws1",
                    "clientMessageId": "c1",
                    "text": "hi",
                    "userId": "u1",
                }
            )
            error, _ = await conn.until("error")
            assert error["ref"] == "c1"
            await say(conn, "more", "c2")
            frames = await turn_frames(conn)
            assert frames[-1]["data"]["subtype"] == "success"
            nursery.cancel_scope.cancel()


async def test_release_stops_and_keeps_the_log(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay)
            await nursery.start(agent.run)
            conn = await relay.accept()
            await conn.recv()
            await assign(conn)
            await conn.send({"type": "workspace_released", "workspaceId": "ws1"})
            status, _ = await conn.until("status")
            assert status["status"] == "stopped"
            await conn.send({"type": "snapshot_request", "workspaceId": "ws1", "requestId": "r"})
            error = await conn.recv()
            assert error["code"] == "not_found"
            assert (tmp_path / "state" / "workspaces" / "ws1" / "log.jsonl").exists()
            # Assigned again: the same log goes on.
            await conn.send({"type": "workspace_assigned", "workspaceId": "ws1", "issue": ISSUE})
            idle, _ = await conn.until("status", status="idle")
            assert idle["epoch"] == status["epoch"]
            assert idle["seq"] > status["seq"]
            nursery.cancel_scope.cancel()


async def test_renewed_token_is_sent_as_auth(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay, token="first.token.x")
            agent.settings = attrs.evolve(agent.settings, token_check_interval=0.01)
            await nursery.start(agent.run)
            conn = await relay.accept()
            await conn.recv()
            (tmp_path / "token").write_text("second.token.y\n")
            auth, _ = await conn.until("auth")
            assert auth == {"type": "auth", "token": "second.token.y"}
            # A reconnect uses the new token.
            await conn.close()
            conn = await relay.accept()
            assert conn.headers["authorization"] == "Bearer second.token.y"
            nursery.cancel_scope.cancel()


async def test_released_and_assigned_again_at_once(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(10):
        async with assigned_agent(tmp_path, relay) as conn:
            await conn.send({"type": "workspace_released", "workspaceId": "ws1"})
            await conn.send({"type": "workspace_assigned", "workspaceId": "ws1", "issue": ISSUE})
            stopped, _ = await conn.until("status", status="stopped")
            idle, _ = await conn.until("status", status="idle")
            assert idle["seq"] > stopped["seq"]
            await say(conn, "still there?", "c1")
            frames = await turn_frames(conn)
            assert frames[-1]["data"]["subtype"] == "success"


async def test_queued_messages_are_answered_after_a_restart(
    tmp_path: Path, relay: FakeRelay
) -> None:
    with trio.fail_after(10):
        async with assigned_agent(tmp_path, relay, word_delay=0.01) as conn:
            await say(conn, "a long one please", "c1")
            await conn.until("claude_message")
            await say(conn, "and then this", "c2")  # queued behind the long reply
            # Leaving the block stops the agent mid-turn.

        async with trio.open_nursery() as nursery:
            await nursery.start(make_agent(tmp_path, relay).run)
            conn = await relay.accept()
            await conn.recv()
            frames = await turn_frames(conn)
            result = frames[-1]["data"]
            assert result["subtype"] == "success"
            assert "and then this" in result["result"]
            # The cut-short turn is not run again.
            assert not any(
                f["type"] == "claude_message" and "(40)" in json.dumps(f["data"]) for f in frames
            )
            nursery.cancel_scope.cancel()


async def test_outbox_overflow_drops_the_connection_not_frames(
    tmp_path: Path, relay: FakeRelay
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay)
            agent.settings = attrs.evolve(agent.settings, outbox_limit=3)
            await nursery.start(agent.run)
            conn = await relay.accept()
            await conn.recv()
            assert agent.connects == 1
            # More frames at once than the queue holds: the connection is given up...
            for i in range(10):
                agent.post(f'{{"type":"error","code":"bad_request","message":"{i}"}}')
            # ...and a new one starts with hello, from where the log is.
            conn = await relay.accept()
            hello = await conn.recv()
            assert hello["type"] == "hello"
            assert agent.connects == 2
            nursery.cancel_scope.cancel()


async def test_session_settings_reach_the_init_line_and_survive_a_restart(
    tmp_path: Path, relay: FakeRelay
) -> None:
    async def change(
        conn: VmConn, request_id: str, **args: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        await conn.send(
            {
                "type": "request",
                "workspaceId": "ws1",
                "requestId": request_id,
                "op": "session_settings",
                "args": args,
                "userId": "u1",
                "connectionId": "k1",
            }
        )
        return await conn.until("reply", requestId=request_id)

    with trio.fail_after(10):
        async with assigned_agent(tmp_path, relay) as conn:
            reply, _ = await change(conn, "r1", model="nope")
            assert reply["ok"] is False
            assert "no model" in reply["error"]["message"]
            reply, [logged] = await change(conn, "r2", model="demo-large", permissionMode="plan")
            assert reply["result"] == {"model": "demo-large", "permissionMode": "plan"}
            assert logged["data"] == {
                "type": "system",
                "subtype": "vmagent_session_settings",
                "model": "demo-large",
                "permissionMode": "plan",
                "userId": "u1",
            }
            await say(conn, "hello", "c1")
            init, _ = await conn.until("claude_message")
            data = init["data"]
            assert (data["subtype"], data["model"], data["permissionMode"]) == (
                "init",
                "demo-large",
                "plan",
            )
        # A restarted vmagent reads the settings back from the log.
        async with trio.open_nursery() as nursery:
            await nursery.start(make_agent(tmp_path, relay).run)
            conn = await relay.accept()
            await conn.recv()
            await conn.send({"type": "workspace_assigned", "workspaceId": "ws1", "issue": ISSUE})
            await say(conn, "again", "c2")
            while True:
                frame, _ = await conn.until("claude_message")
                data = frame["data"]
                if data.get("subtype") == "init":
                    break
            assert (data["model"], data["permissionMode"]) == ("demo-large", "plan")
            nursery.cancel_scope.cancel()


async def test_plan_mode_asks_exit_plan_mode_and_approval_leaves_it(
    tmp_path: Path, relay: FakeRelay
) -> None:
    with trio.fail_after(10):
        async with assigned_agent(tmp_path, relay) as conn:
            await conn.send(
                {
                    "type": "request",
                    "workspaceId": "ws1",
                    "requestId": "r1",
                    "op": "session_settings",
                    "args": {"permissionMode": "plan"},
                    "userId": "u1",
                    "connectionId": "k1",
                }
            )
            await conn.until("reply", requestId="r1")
            await say(conn, "rename a", "c1")
            request, _ = await conn.until("permission_request")
            assert request["toolName"] == "ExitPlanMode"
            assert request["toolInput"]["plan"].startswith("# Demo plan")
            await conn.send(
                {
                    "type": "permission_response",
                    "workspaceId": "ws1",
                    "requestId": request["requestId"],
                    "allow": True,
                    "userId": "u1",
                }
            )
            frames = await turn_frames(conn)
            assert any("plan approved" in json.dumps(f) for f in frames)
            await say(conn, "go", "c2")
            init, _ = await conn.until("claude_message")
            assert init["data"]["permissionMode"] == "default"

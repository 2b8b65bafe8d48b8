"""The claude engine with the real bundled Claude Code CLI against a fake Messages API."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.support.fake_anthropic import FakeAnthropic, Reply, text, tool_use
from tests.support.images import b64, png
from tests.vmagent.fakerelay import (
    FakeRelay,
    VmConn,
    agent_for,
    assign,
    say,
    snapshot,
    turn_frames,
)
from vmagent.agent import Agent
from vmagent.engines.claude import ClaudeEngine, ClaudeSession, bundled_cli

pytestmark = pytest.mark.claude

DEADLINE = 90


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeAnthropic]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(FakeAnthropic().run)
        nursery.cancel_scope.cancel()


TEE = """
import signal, subprocess, sys
out = open(sys.argv[1], "ab", buffering=0)
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE)
signal.signal(signal.SIGTERM, lambda *_: child.terminate())
for line in child.stdout:
    out.write(line)  # recorded before vmagent can see it
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
sys.exit(child.wait())
"""


def tee_cli(tmp_path: Path, record: Path) -> str:
    """An executable that runs the bundled CLI and records what it prints."""
    (tmp_path / "tee.py").write_text(TEE)
    script = tmp_path / "claude-tee"
    script.write_text(
        f'#!/bin/sh\nexec {sys.executable} {tmp_path / "tee.py"} {record} {bundled_cli()} "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def make_agent(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic, cli_path: str | None = None
) -> Agent:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    engine = ClaudeEngine(
        cli_path=cli_path,
        env={
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": fake_api.url,
            "ANTHROPIC_API_KEY": "sk-fake-key",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        },
    )
    return agent_for(relay, tmp_path, engine)


def claude_data(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        f["data"] for f in frames if f["type"] == "claude_message" and f["data"]["type"] == kind
    ]


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of a Messages API request's trailing user turn(s)."""
    found: list[dict[str, Any]] = []
    for message in request["messages"]:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, list):
            found.extend(
                b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"
            )
    return found


def result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict))
    return str(content)


async def start(nursery: trio.Nursery, agent: Agent, relay: FakeRelay) -> VmConn:
    await nursery.start(agent.run)
    conn = await relay.accept()
    assert (await conn.recv())["type"] == "hello"
    return conn


async def test_text_reply_streams_and_resumes_after_restart(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    with trio.fail_after(DEADLINE):
        fake_api.push(Reply([text("Hello from the fake model.", chunks=4)]))
        async with trio.open_nursery() as nursery:
            record = tmp_path / "printed.jsonl"
            agent = make_agent(tmp_path, relay, fake_api, cli_path=tee_cli(tmp_path, record))
            conn = await start(nursery, agent, relay)
            await assign(conn)
            await say(conn, "say hello", "c1")
            raws: list[str] = []
            while not raws or '"type":"result"' not in raws[-1]:
                raws.append(await conn.recv_raw())
            frames = [json.loads(r) for r in raws]
            # Each line the CLI printed went out as one claude_message, byte for byte.
            printed = [
                line
                for line in record.read_text().splitlines()
                if line and not json.loads(line)["type"].startswith("control_")
            ]
            sent = [r.split(',"data":', 1)[1][:-1] for r in raws if '"claude_message"' in r[:30]]
            assert sent == printed
            init = claude_data(frames, "system")[0]
            assert init["subtype"] == "init"
            session_id = init["session_id"]
            deltas = [
                d["event"]["delta"]["text"]
                for d in claude_data(frames, "stream_event")
                if d["event"]["type"] == "content_block_delta"
            ]
            assert "".join(deltas) == "Hello from the fake model."
            assert len(deltas) == 4  # partial messages are on
            [assistant] = claude_data(frames, "assistant")
            assert assistant["message"]["content"] == [
                {"type": "text", "text": "Hello from the fake model."}
            ]
            result = claude_data(frames, "result")[-1]
            assert result["subtype"] == "success"
            assert result["session_id"] == session_id
            assert "duration_ms" in result
            assert "total_cost_usd" in result
            first = await fake_api.wait_for_conversation(1)
            assert first["stream"] is True
            assert "say hello" in json.dumps(first["messages"])
            before = await snapshot(conn)
            nursery.cancel_scope.cancel()

        # A new vmagent on the same state: it resumes the same Claude session.
        fake_api.push(Reply([text("Still here.")]))
        async with trio.open_nursery() as nursery:
            conn = await start(nursery, make_agent(tmp_path, relay, fake_api), relay)
            again = await snapshot(conn)
            assert again["messages"] == before["messages"]
            await say(conn, "are you still there", "c2")
            frames = await turn_frames(conn)
            assert claude_data(frames, "result")[-1]["session_id"] == session_id
            second = await fake_api.wait_for_conversation(2)
            history = json.dumps(second["messages"])
            assert "say hello" in history
            assert "Hello from the fake model." in history
            nursery.cancel_scope.cancel()


async def test_bash_permission_allowed_then_denied(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay, fake_api)
            conn = await start(nursery, agent, relay)
            await assign(conn)
            work = tmp_path / "state" / "workspaces" / "ws1" / "work"
            fake_api.push(
                Reply(
                    [
                        tool_use(
                            "Bash",
                            {"command": "touch allowed.txt", "description": "create a file"},
                            "toolu_allow",
                        )
                    ]
                ),
                Reply([text("Created it.")]),
                Reply(
                    [
                        tool_use(
                            "Bash",
                            {"command": "touch denied.txt", "description": "create another"},
                            "toolu_deny",
                        )
                    ]
                ),
                Reply([text("I will not create it.")]),
            )

            await say(conn, "create a file", "c1")
            request, _ = await conn.until("permission_request")
            assert request["toolName"] == "Bash"
            assert request["toolInput"]["command"] == "touch allowed.txt"
            assert request["toolUseId"] == "toolu_allow"
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
            resolved, _ = await conn.until("request_resolved")
            assert (resolved["resolution"], resolved["userId"]) == ("allowed", "u1")
            frames = await turn_frames(conn)
            assert (work / "allowed.txt").exists()
            [ran] = [
                b
                for b in tool_results(await fake_api.wait_for_conversation(2))
                if b["tool_use_id"] == "toolu_allow"
            ]
            assert not ran.get("is_error")
            user_lines = claude_data(frames, "user")
            assert user_lines[0]["message"]["content"][0]["tool_use_id"] == "toolu_allow"

            await say(conn, "create another", "c2")
            request, _ = await conn.until("permission_request")
            await conn.send(
                {
                    "type": "permission_response",
                    "workspaceId": "ws1",
                    "requestId": request["requestId"],
                    "allow": False,
                    "message": "not in this repo",
                    "userId": "u2",
                }
            )
            resolved, _ = await conn.until("request_resolved")
            assert resolved["resolution"] == "denied"
            await turn_frames(conn)
            assert not (work / "denied.txt").exists()
            [refused] = [
                b
                for b in tool_results(await fake_api.wait_for_conversation(4))
                if b["tool_use_id"] == "toolu_deny"
            ]
            assert refused["is_error"] is True
            assert "not in this repo" in result_text(refused)

            # An interrupt while a permission is open cancels it and ends the turn.
            fake_api.push(
                Reply(
                    [
                        tool_use(
                            "Bash", {"command": "touch never.txt", "description": "x"}, "toolu_int"
                        )
                    ]
                ),
                Reply([text("Stopped.")]),
                Reply([text("Back again.")]),
            )
            await say(conn, "create a third", "c3")
            request, _ = await conn.until("permission_request")
            await conn.until("status", status="waiting_for_input")
            await conn.send({"type": "interrupt", "workspaceId": "ws1", "userId": "u1"})
            resolved, _ = await conn.until("request_resolved")
            assert (resolved["requestId"], resolved["resolution"]) == (
                request["requestId"],
                "cancelled",
            )
            await turn_frames(conn)
            await conn.until("status", status="idle")
            assert not (work / "never.txt").exists()
            await say(conn, "hello?", "c4")
            frames = await turn_frames(conn)
            assert claude_data(frames, "result")[-1]["subtype"] == "success"
            nursery.cancel_scope.cancel()


async def test_questions_then_interrupt_then_more(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    questions = [
        {
            "question": "Which database?",
            "header": "Database",
            "options": [
                {"label": "SQLite", "description": "one file"},
                {"label": "PostgreSQL", "description": "a server"},
            ],
            "multiSelect": False,
        },
        {
            "question": "Which checks?",
            "header": "Checks",
            "options": [
                {"label": "Lint", "description": "ruff"},
                {"label": "Types", "description": "mypy"},
                {"label": "Tests", "description": "pytest"},
            ],
            "multiSelect": True,
        },
    ]
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            conn = await start(nursery, make_agent(tmp_path, relay, fake_api), relay)
            await assign(conn)
            fake_api.push(
                Reply([tool_use("AskUserQuestion", {"questions": questions}, "toolu_ask")]),
                Reply([text("Thanks for the answers.")]),
                Reply([text("word " * 400, chunks=400)], delay=0.02),
                Reply([text("After the interrupt.")]),
            )
            await say(conn, "ask me things", "c1")
            question, _ = await conn.until("user_question")
            assert question["questions"] == questions
            await conn.send(
                {
                    "type": "question_response",
                    "workspaceId": "ws1",
                    "requestId": question["requestId"],
                    "answers": {"Which database?": "SQLite", "Which checks?": ["Lint", "Tests"]},
                    "userId": "u1",
                }
            )
            resolved, _ = await conn.until("request_resolved")
            assert resolved["resolution"] == "answered"
            await turn_frames(conn)
            [answered] = [
                b
                for b in tool_results(await fake_api.wait_for_conversation(2))
                if b["tool_use_id"] == "toolu_ask"
            ]
            answer_text = result_text(answered)
            assert "SQLite" in answer_text
            assert "Lint, Tests" in answer_text

            await say(conn, "write a lot", "c2")
            await conn.until("claude_message")
            # Wait until the long reply is really streaming, then stop it.
            while True:
                frame = await conn.recv()
                if (
                    frame["type"] == "claude_message"
                    and frame["data"]["type"] == "stream_event"
                    and frame["data"]["event"]["type"] == "content_block_delta"
                ):
                    break
            await conn.send({"type": "interrupt", "workspaceId": "ws1", "userId": "u1"})
            frames = await turn_frames(conn)
            streamed = [
                f
                for f in frames
                if f["type"] == "claude_message" and f["data"]["type"] == "stream_event"
            ]
            assert len(streamed) < 350  # stopped well before the 400 deltas
            await conn.until("status", status="idle")

            await say(conn, "go on", "c3")
            frames = await turn_frames(conn)
            assert (
                claude_data(frames, "assistant")[-1]["message"]["content"][0]["text"]
                == "After the interrupt."
            )
            nursery.cancel_scope.cancel()


async def test_cli_crash_is_an_error_and_the_next_message_resumes(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay, fake_api)
            conn = await start(nursery, agent, relay)
            await assign(conn)
            fake_api.push(
                Reply([text("slow " * 300, chunks=300)], delay=0.02),
                Reply([text("Recovered.")]),
            )
            await say(conn, "talk slowly", "c1")
            first, _ = await conn.until("claude_message")
            session_id = first["data"]["session_id"]
            # Kill it once the model's reply is really streaming.
            while True:
                frame = await conn.recv()
                if frame["type"] == "claude_message" and frame["data"]["type"] == "stream_event":
                    break
            engine_session = agent.sessions["ws1"]._engine_session
            assert isinstance(engine_session, ClaudeSession)
            assert engine_session._proc is not None
            engine_session._proc.kill()
            status, _ = await conn.until("status", status="error")
            assert status["detail"].startswith("Claude Code exited (exit status -9)"), status
            await say(conn, "are you back", "c2")
            # Killed in its first turn, Claude Code kept no transcript to resume:
            # the message is answered in a new session rather than lost.
            while True:
                frames = await turn_frames(conn)
                result = claude_data(frames, "result")[-1]
                if result["subtype"] == "success":
                    break
                assert result["session_id"] == session_id  # the failed resume
            assert result["result"] == "Recovered."
            assert "are you back" in json.dumps(
                (await fake_api.wait_for_conversation(2))["messages"]
            )
            status, _ = await conn.until("status", status="idle")
            nursery.cancel_scope.cancel()


def user_texts(request: dict[str, Any]) -> list[str]:
    """Every text the user turns of a Messages API request carry."""
    found: list[str] = []
    for message in request["messages"]:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            found.append(content)
        elif isinstance(content, list):
            found.extend(
                b.get("text", "")
                for b in content
                if isinstance(b, dict) and b.get("type") == "text"
            )
    return found


async def test_stop_with_a_permission_open_then_the_message_sent_meanwhile(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    """Stop ends the turn while a prompt is open (the request is cancelled), and a
    message sent during the turn reaches Claude only after the turn ended, as a
    turn of its own."""
    queued = "and then tell me about widgets"
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            conn = await start(nursery, make_agent(tmp_path, relay, fake_api), relay)
            await assign(conn)
            fake_api.push(
                Reply([tool_use("Bash", {"command": "touch x.txt"}, "toolu_x")]),
                Reply([text("Widgets are small.")]),
            )
            await say(conn, "create a file", "c1")
            request, _ = await conn.until("permission_request")
            await conn.until("status", status="waiting_for_input")
            # Sent while the turn waits: the VM accepts and echoes it, and holds it.
            await say(conn, queued, "c2")
            assert len(fake_api.conversation) == 1
            assert queued not in " ".join(user_texts(fake_api.conversation[0]))

            await conn.send({"type": "interrupt", "workspaceId": "ws1", "userId": "u1"})
            resolved, _ = await conn.until("request_resolved")
            assert resolved["requestId"] == request["requestId"]
            assert resolved["resolution"] == "cancelled"
            first = claude_data(await turn_frames(conn), "result")
            assert len(first) == 1
            # The first turn's requests never carried the held message.
            for body in fake_api.conversation[:1]:
                assert queued not in " ".join(user_texts(body))
            assert not (tmp_path / "state" / "workspaces" / "ws1" / "work" / "x.txt").exists()

            # Then it goes out as the next turn, and Claude answers it.
            second = claude_data(await turn_frames(conn), "assistant")
            assert second[-1]["message"]["content"][0]["text"] == "Widgets are small."
            body = await fake_api.wait_for_conversation(2)
            assert user_texts(body)[-1] == queued
            await conn.until("status", status="idle")
            nursery.cancel_scope.cancel()


async def settings(conn: VmConn, request_id: str, **args: Any) -> dict[str, Any]:
    """Send a ``session_settings`` request as relayd forwards it; its reply."""
    return await conn_request(conn, request_id, "session_settings", **args)


async def conn_request(conn: VmConn, request_id: str, op: str, **args: Any) -> dict[str, Any]:
    """Send a ``request`` as relayd forwards it; its reply (frames before it skipped)."""
    await conn.send(
        {
            "type": "request",
            "workspaceId": "ws1",
            "requestId": request_id,
            "op": op,
            "args": args,
            "userId": "u1",
            "connectionId": "k1",
        }
    )
    reply, _ = await conn.until("reply", requestId=request_id)
    return reply


async def test_plan_mode_exit_plan_sent_back_then_approved_and_model_changed(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    """In plan mode ExitPlanMode comes as a permission request; a comment sends the
    plan back (Claude sees it), approval lets the turn go on; a model chosen
    mid-session is the model of the next request."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay, fake_api)
            conn = await start(nursery, agent, relay)
            await assign(conn)
            fake_api.push(
                Reply([tool_use("ExitPlanMode", {}, "toolu_plan1")]),
                Reply([tool_use("ExitPlanMode", {}, "toolu_plan2")]),
                Reply([text("Plan approved; renaming now.")]),
            )
            # Before the first turn: the CLI starts in plan mode.
            reply = await settings(conn, "s1", permissionMode="plan")
            assert reply["ok"] is True
            assert reply["result"]["permissionMode"] == "plan"
            await say(conn, "plan a rename", "c1")
            request, seen = await conn.until("permission_request")
            assert request["toolName"] == "ExitPlanMode"
            [init] = [
                f["data"]
                for f in seen
                if f["type"] == "claude_message" and f["data"].get("subtype") == "init"
            ]
            assert init["permissionMode"] == "plan"
            offered = await conn_request(conn, "m1", "session_models")
            assert offered["result"]["permissionMode"] == "plan"
            assert offered["result"]["bypassAllowed"] is True
            assert offered["result"]["models"]
            assert all(isinstance(m["value"], str) for m in offered["result"]["models"])
            await conn.send(
                {
                    "type": "permission_response",
                    "workspaceId": "ws1",
                    "requestId": request["requestId"],
                    "allow": False,
                    "message": "call it c, not b",
                    "userId": "u1",
                }
            )
            # The turn goes on: Claude, told why, plans again.
            request, _ = await conn.until("permission_request")
            assert request["toolName"] == "ExitPlanMode"
            [sent_back] = [
                b
                for b in tool_results(await fake_api.wait_for_conversation(2))
                if b["tool_use_id"] == "toolu_plan1"
            ]
            assert sent_back["is_error"] is True
            assert "call it c, not b" in result_text(sent_back)
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
            [approved] = [
                b
                for b in tool_results(await fake_api.wait_for_conversation(3))
                if b["tool_use_id"] == "toolu_plan2"
            ]
            assert not approved.get("is_error")
            texts = [
                block.get("text")
                for line in claude_data(frames, "assistant")
                for block in line["message"]["content"]
            ]
            assert "Plan approved; renaming now." in texts

            # The CLI is running now: the change goes to it as set_model /
            # set_permission_mode, and is logged for every viewer.
            reply = await settings(
                conn, "s2", model="claude-sonnet-4-5", permissionMode="acceptEdits"
            )
            assert reply["result"] == {
                "model": "claude-sonnet-4-5",
                "permissionMode": "acceptEdits",
            }
            snap = await snapshot(conn)
            recorded = [
                json.loads(m["data"]) if isinstance(m["data"], str) else m["data"]
                for m in snap["messages"]
                if m["type"] == "claude_message"
            ]
            logged = [r for r in recorded if r.get("subtype") == "vmagent_session_settings"]
            assert [r["permissionMode"] for r in logged] == ["plan", "acceptEdits"]
            assert logged[-1]["model"] == "claude-sonnet-4-5"
            fake_api.push(Reply([text("Now on Sonnet.")]))
            await say(conn, "go on", "c2")
            await turn_frames(conn)
            assert (await fake_api.wait_for_conversation(4))["model"] == "claude-sonnet-4-5"
            assert fake_api.conversation[0]["model"] != "claude-sonnet-4-5"
            nursery.cancel_scope.cancel()


async def test_bypass_refused_when_the_operator_disabled_it(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay, fake_api)
            agent.settings = attrs.evolve(agent.settings, allow_bypass_permissions=False)
            conn = await start(nursery, agent, relay)
            await assign(conn)
            reply = await settings(conn, "s1", permissionMode="bypassPermissions")
            assert reply["ok"] is False
            assert reply["error"]["code"] == "forbidden"
            assert "disabled on this VM" in reply["error"]["message"]
            reply = await settings(conn, "s2", permissionMode="yolo")
            assert reply["error"]["code"] == "bad_request"
            snap = await snapshot(conn)
            assert not [m for m in snap["messages"] if m["type"] == "claude_message"]
            nursery.cancel_scope.cancel()


async def test_repository_command_listed_before_the_first_turn_and_expanded(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    """``session_commands`` starts the CLI and lists what its ``initialize`` answer
    lists, the repository's ``.claude/commands/*.md`` among the built-ins; sent
    as ``/name args`` the CLI expands the command, arguments in, into the
    request the model gets. A built-in that runs in the CLI (``/context``)
    answers without asking the model."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay, fake_api)
            conn = await start(nursery, agent, relay)
            await assign(conn)
            work = tmp_path / "state" / "workspaces" / "ws1" / "work"
            (work / ".claude" / "commands").mkdir(parents=True)
            (work / ".claude" / "commands" / "greet.md").write_text(
                "---\ndescription: Greet someone warmly\nargument-hint: <name>\n---\n"
                "Please greet $ARGUMENTS with the magic word XYZZY.\n"
            )
            engine_session = agent.sessions["ws1"]._engine_session
            assert isinstance(engine_session, ClaudeSession)
            assert engine_session._proc is None  # no turn yet, no CLI yet
            reply = await conn_request(conn, "k1", "session_commands")
            assert reply["ok"] is True
            assert reply["result"]["ready"] is True
            offered = {c["name"]: c for c in reply["result"]["commands"]}
            assert offered["greet"] == {
                "name": "greet",
                "description": "Greet someone warmly (project)",
                "argumentHint": "<name>",
                "source": "project",
            }
            assert offered["compact"]["source"] == "builtin"  # the CLI's builtin flag
            assert not [n for n in offered if n.startswith("_")]
            assert fake_api.conversation == []

            fake_api.push(Reply([text("Hello, Ada! XYZZY.")]))
            await say(conn, "/greet Ada Lovelace", "c1")
            frames = await turn_frames(conn)
            [init] = [d for d in claude_data(frames, "system") if d.get("subtype") == "init"]
            assert "greet" in init["slash_commands"]
            request = await fake_api.wait_for_conversation(1)
            user_text = json.dumps([m for m in request["messages"] if m.get("role") == "user"])
            assert "Please greet Ada Lovelace with the magic word XYZZY." in user_text
            assert "<command-name>/greet</command-name>" in user_text
            assert claude_data(frames, "result")[-1]["subtype"] == "success"

            await say(conn, "/context", "c2")
            frames = await turn_frames(conn)
            [answer] = claude_data(frames, "assistant")
            assert "Context Usage" in answer["message"]["content"][0]["text"]
            assert len(fake_api.conversation) == 1  # the model was not asked

            # After a turn the init line's names are what is offered.
            reply = await conn_request(conn, "k2", "session_commands")
            names = {c["name"] for c in reply["result"]["commands"]}
            assert "greet" in names
            assert names <= set(init["slash_commands"])
            assert not names & set(init.get("terminal_slash_commands", []))
            nursery.cancel_scope.cancel()


async def test_images_and_text_files_reach_the_api_as_content_blocks(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    """The user turn goes to the CLI as content blocks; the request the Messages API
    gets carries the image as an image block and the file as a text block naming it."""
    image = png(4, 3)
    with trio.fail_after(DEADLINE):
        fake_api.push(Reply([text("A small orange square.")]))
        async with trio.open_nursery() as nursery:
            conn = await start(nursery, make_agent(tmp_path, relay, fake_api), relay)
            await assign(conn)
            await conn.send(
                {
                    "type": "user_message",
                    "workspaceId": "ws1",
                    "clientMessageId": "c1",
                    "text": "what is in the picture?",
                    "userId": "u1",
                    "attachments": [
                        {"type": "image", "mediaType": "image/png", "data": b64(image)},
                        {"type": "text", "name": "notes.txt", "text": "the square is orange"},
                    ],
                }
            )
            echo, _ = await conn.until("user_message", clientMessageId="c1")
            assert [a["type"] for a in echo["attachments"]] == ["image", "text"]
            frames = await turn_frames(conn)
            assert claude_data(frames, "result")[-1]["subtype"] == "success"
            request = await fake_api.wait_for_conversation(1)
            [turn] = [m for m in request["messages"] if m["role"] == "user"]
            blocks = [b for b in turn["content"] if b.get("type") in ("image", "text")]
            images = [b for b in blocks if b["type"] == "image"]
            assert images == [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": b64(image)},
                }
            ]
            # In order: the image, the file naming itself, the words (the CLI adds
            # reminders of its own around them).
            texts = [b.get("text", "").strip() for b in blocks]
            file_at = texts.index('Attached file "notes.txt":\n\nthe square is orange')
            words_at = texts.index("what is in the picture?")
            assert blocks.index(images[0]) < file_at < words_at
            nursery.cancel_scope.cancel()


async def test_clear_starts_a_new_session_that_a_restart_resumes(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    """``/clear`` makes Claude Code start a new session (the ``result`` names it):
    a vmagent restarted right after resumes that one, not the cleared one."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            conn = await start(nursery, make_agent(tmp_path, relay, fake_api), relay)
            await assign(conn)
            fake_api.push(Reply([text("Noted the secret word.")]))
            await say(conn, "remember the word PINEAPPLE", "c1")
            first = claude_data(await turn_frames(conn), "result")[-1]["session_id"]
            await say(conn, "/clear", "c2")
            frames = await turn_frames(conn)
            assert claude_data(frames, "conversation_reset")
            cleared = claude_data(frames, "result")[-1]["session_id"]
            assert cleared != first
            assert len(fake_api.conversation) == 1  # /clear did not ask the model
            nursery.cancel_scope.cancel()

        fake_api.push(Reply([text("A fresh start.")]))
        async with trio.open_nursery() as nursery:
            conn = await start(nursery, make_agent(tmp_path, relay, fake_api), relay)
            await say(conn, "what was the word", "c3")
            frames = await turn_frames(conn)
            assert claude_data(frames, "result")[-1]["session_id"] == cleared
            history = json.dumps((await fake_api.wait_for_conversation(2))["messages"])
            assert "what was the word" in history
            assert "PINEAPPLE" not in history
            nursery.cancel_scope.cancel()


async def test_a_slash_command_with_an_image_is_expanded_and_keeps_the_image(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    """The words are the last block, so the CLI still reads them as the command."""
    with trio.fail_after(DEADLINE):
        fake_api.push(Reply([text("Hello, Ada.")]))
        async with trio.open_nursery() as nursery:
            conn = await start(nursery, make_agent(tmp_path, relay, fake_api), relay)
            await assign(conn)
            commands = tmp_path / "state" / "workspaces" / "ws1" / "work" / ".claude" / "commands"
            commands.mkdir(parents=True)
            (commands / "greet.md").write_text("Please greet $ARGUMENTS with the word XYZZY.\n")
            image = png(4, 3)
            attached = {"type": "image", "mediaType": "image/png", "data": b64(image)}
            await conn.send(
                {
                    "type": "user_message",
                    "workspaceId": "ws1",
                    "clientMessageId": "c1",
                    "text": "/greet Ada",
                    "userId": "u1",
                    "attachments": [attached],
                }
            )
            frames = await turn_frames(conn)
            assert claude_data(frames, "result")[-1]["subtype"] == "success"
            request = await fake_api.wait_for_conversation(1)
            [turn] = [m for m in request["messages"] if m["role"] == "user"]
            texts = [b.get("text", "") for b in turn["content"]]
            assert any("Please greet Ada with the word XYZZY." in t for t in texts)
            assert any("<command-name>/greet</command-name>" in t for t in texts)
            assert [b["source"]["data"] for b in turn["content"] if b["type"] == "image"] == [
                b64(image)
            ]
            nursery.cancel_scope.cancel()

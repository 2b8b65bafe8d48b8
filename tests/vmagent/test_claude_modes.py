"""Plan mode and bypassPermissions with the real Claude Code CLI against the fake API.

The fake model writes its plan where plan mode's reminder tells it to (the CLI's
``plans/`` directory), as a real model does; the plan card must show that text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.support.fake_anthropic import FakeAnthropic, Reply, text, tool_use
from tests.vmagent.fakerelay import FakeRelay, VmConn, assign, say, turn_frames
from tests.vmagent.test_claude_engine import (
    DEADLINE,
    claude_data,
    fake_api,
    make_agent,
    result_text,
    settings,
    start,
    tool_results,
)
from vmagent.engines.claude import ClaudeEngine

__all__ = ["fake_api"]  # the fixture, used by name

pytestmark = pytest.mark.claude

#: Where plan mode's reminder (in the request body) says the plan file goes.
PLAN_PATH = re.compile(r'(/[^"\s\\]*/\.claude/plans/[A-Za-z0-9._-]+\.md)')


def plan_path(body: dict[str, Any]) -> str:
    """The plan file path the CLI named to the model in this request."""
    found = PLAN_PATH.search(json.dumps(body))
    assert found is not None, "plan mode named no plan file"
    return found.group(1)


def write_plan(content: str, tool_id: str) -> Any:
    """A reply, made from the request, that writes ``content`` to the named plan file."""
    return lambda body: Reply(
        [tool_use("Write", {"file_path": plan_path(body), "content": content}, tool_id)]
    )


def edit_plan(old: str, new: str, tool_id: str) -> Any:
    return lambda body: Reply(
        [
            tool_use(
                "Edit",
                {"file_path": plan_path(body), "old_string": old, "new_string": new},
                tool_id,
            )
        ]
    )


async def decide(conn: VmConn, request: dict[str, Any], allow: bool, message: str = "") -> None:
    body: dict[str, Any] = {
        "type": "permission_response",
        "workspaceId": "ws1",
        "requestId": request["requestId"],
        "allow": allow,
        "userId": "u1",
    }
    if message:
        body["message"] = message
    await conn.send(body)


def tool_result_for(body: dict[str, Any], tool_use_id: str) -> dict[str, Any]:
    [found] = [b for b in tool_results(body) if b["tool_use_id"] == tool_use_id]
    return found


async def test_plan_card_carries_the_plan_file_sent_back_then_approved(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    """The ExitPlanMode permission request carries the plan Claude wrote to its
    plan file; a comment sends it back (Claude sees the comment, edits the plan,
    the next card shows the new text); approval lets the turn go on."""
    first = "# Rename plan\n\n1. Rename `b` to `c`.\n2. Run the tests.\n"
    edited = "2. Update the docs.\n3. Run the tests."
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            conn = await start(nursery, make_agent(tmp_path, relay, fake_api), relay)
            await assign(conn)
            fake_api.push(
                write_plan(first, "toolu_write"),
                Reply([tool_use("ExitPlanMode", {}, "toolu_plan1")]),
                edit_plan("2. Run the tests.", edited, "toolu_ed"),
                Reply([tool_use("ExitPlanMode", {}, "toolu_plan2")]),
                Reply([text("Plan approved; renaming now.")]),
            )
            assert (await settings(conn, "s1", permissionMode="plan"))["ok"] is True
            await say(conn, "plan a rename", "c1")

            request, _ = await conn.until("permission_request")
            assert request["toolName"] == "ExitPlanMode"
            assert request["toolUseId"] == "toolu_plan1"
            assert request["toolInput"]["plan"] == first
            written = trio.Path(plan_path(fake_api.conversation[0]))
            assert await written.read_text() == first  # the CLI wrote the file
            await decide(conn, request, False, "also update the docs")

            request, _ = await conn.until("permission_request")
            assert request["toolUseId"] == "toolu_plan2"
            sent_back = tool_result_for(fake_api.conversation[2], "toolu_plan1")
            assert sent_back["is_error"] is True
            assert "also update the docs" in result_text(sent_back)
            assert request["toolInput"]["plan"] == first.replace("2. Run the tests.", edited)
            assert len(fake_api.conversation) == 4  # nothing goes on before the answer
            await decide(conn, request, True)

            frames = await turn_frames(conn)
            approved = tool_result_for(await fake_api.wait_for_conversation(5), "toolu_plan2")
            assert not approved.get("is_error")
            assert "2. Update the docs." in result_text(approved)  # the approved plan
            texts = [
                block.get("text")
                for line in claude_data(frames, "assistant")
                for block in line["message"]["content"]
            ]
            assert "Plan approved; renaming now." in texts
            nursery.cancel_scope.cancel()


async def test_a_long_plan_is_cut_on_the_card_and_whole_for_claude(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    limit = 2048
    plan = "# Long plan\n\n" + "".join(f"{i}. Step number {i} of many.\n" for i in range(400))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            agent = make_agent(tmp_path, relay, fake_api)
            assert isinstance(agent.engine, ClaudeEngine)
            agent.engine.max_plan = limit
            conn = await start(nursery, agent, relay)
            await assign(conn)
            fake_api.push(
                write_plan(plan, "toolu_write"),
                Reply([tool_use("ExitPlanMode", {}, "toolu_plan")]),
                Reply([text("Working on it.")]),
            )
            await settings(conn, "s1", permissionMode="plan")
            await say(conn, "plan a lot", "c1")
            request, _ = await conn.until("permission_request")
            shown = request["toolInput"]["plan"]
            assert len(shown.encode()) <= limit
            assert shown.startswith("# Long plan\n\n0. Step number 0")
            assert "longer than 2048 bytes" in shown
            await decide(conn, request, True)
            await turn_frames(conn)
            # What went back to the CLI was its own input: Claude gets the whole plan.
            approved = tool_result_for(await fake_api.wait_for_conversation(3), "toolu_plan")
            assert "399. Step number 399 of many." in result_text(approved)
            nursery.cancel_scope.cancel()


def sandboxed(agent: Any) -> Any:
    """The agent's CLI told it runs in a sandbox: as root (these tests may run as
    root) Claude Code offers bypassPermissions only then."""
    assert isinstance(agent.engine, ClaudeEngine)
    agent.engine.env = {**(agent.engine.env or {}), "IS_SANDBOX": "1"}
    assert agent.engine.bypass_possible()
    return agent


def bash(command: str, tool_id: str) -> Reply:
    return Reply([tool_use("Bash", {"command": command, "description": "x"}, tool_id)])


async def test_bypass_mid_session_takes_effect_on_the_running_cli(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    """A running CLI switched to bypassPermissions runs the next tool unasked."""
    work = tmp_path / "state" / "workspaces" / "ws1" / "work"
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            agent = sandboxed(make_agent(tmp_path, relay, fake_api))
            conn = await start(nursery, agent, relay)
            await assign(conn)
            fake_api.push(
                bash("touch asked.txt", "toolu_asked"),
                Reply([text("Asked first.")]),
                bash("touch unasked.txt", "toolu_unasked"),
                Reply([text("Done without asking.")]),
            )
            await say(conn, "create a file", "c1")
            request, _ = await conn.until("permission_request")  # default mode asks
            await decide(conn, request, True)
            await turn_frames(conn)
            assert (work / "asked.txt").exists()

            reply = await settings(conn, "s1", permissionMode="bypassPermissions")
            assert reply["ok"] is True, reply
            assert reply["result"]["permissionMode"] == "bypassPermissions"
            await say(conn, "create another", "c2")
            frames = await turn_frames(conn)
            assert not [f for f in frames if f["type"] == "permission_request"]
            assert (work / "unasked.txt").exists()
            ran = tool_result_for(await fake_api.wait_for_conversation(4), "toolu_unasked")
            assert not ran.get("is_error")
            nursery.cancel_scope.cancel()


async def test_bypass_refused_on_a_running_cli_when_the_operator_disabled_it(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    work = tmp_path / "state" / "workspaces" / "ws1" / "work"
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            agent = sandboxed(make_agent(tmp_path, relay, fake_api))
            agent.settings = attrs.evolve(agent.settings, allow_bypass_permissions=False)
            conn = await start(nursery, agent, relay)
            await assign(conn)
            fake_api.push(
                Reply([text("Started.")]),
                bash("touch still-asked.txt", "toolu_still"),
                Reply([text("I was not allowed.")]),
            )
            await say(conn, "hello", "c1")
            await turn_frames(conn)  # the CLI runs now

            reply = await settings(conn, "s1", permissionMode="bypassPermissions")
            assert reply["ok"] is False
            assert reply["error"]["code"] == "forbidden"
            await say(conn, "create a file", "c2")
            request, _ = await conn.until("permission_request")  # still asked
            assert request["toolUseId"] == "toolu_still"
            await decide(conn, request, False, "no")
            await turn_frames(conn)
            assert not (work / "still-asked.txt").exists()
            nursery.cancel_scope.cancel()


async def test_a_bypass_kept_in_the_log_is_not_used_once_the_operator_disables_it(
    tmp_path: Path, relay: FakeRelay, fake_api: FakeAnthropic
) -> None:
    """bypassPermissions chosen before the first turn starts the CLI in it; the
    same session after a restart with --no-bypass-permissions asks again."""
    work = tmp_path / "state" / "workspaces" / "ws1" / "work"
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            conn = await start(nursery, sandboxed(make_agent(tmp_path, relay, fake_api)), relay)
            await assign(conn)
            fake_api.push(bash("touch first.txt", "toolu_first"), Reply([text("Made it unasked.")]))
            assert (await settings(conn, "s1", permissionMode="bypassPermissions"))["ok"]
            await say(conn, "create a file", "c1")
            frames = await turn_frames(conn)
            assert not [f for f in frames if f["type"] == "permission_request"]
            assert claude_data(frames, "system")[0]["permissionMode"] == "bypassPermissions"
            assert (work / "first.txt").exists()
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            agent = sandboxed(make_agent(tmp_path, relay, fake_api))
            agent.settings = attrs.evolve(agent.settings, allow_bypass_permissions=False)
            conn = await start(nursery, agent, relay)
            fake_api.push(bash("touch second.txt", "toolu_second"), Reply([text("Not allowed.")]))
            await say(conn, "create another", "c2")
            request, seen = await conn.until("permission_request")
            assert request["toolUseId"] == "toolu_second"
            [init] = [
                f["data"]
                for f in seen
                if f["type"] == "claude_message" and f["data"].get("subtype") == "init"
            ]
            assert init["permissionMode"] == "default"
            await decide(conn, request, False, "no")
            await turn_frames(conn)
            assert not (work / "second.txt").exists()
            nursery.cancel_scope.cancel()

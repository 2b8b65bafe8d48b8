"""Slash commands: the CLI's list made safe to offer, command files, and the op on the demo."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.vmagent.fakerelay import ISSUE, FakeRelay, VmConn, agent_for, say, turn_frames
from tests.vmagent.test_sessions import create, op, running
from vmagent.engines import demo_commands
from vmagent.engines.base import EngineError
from vmagent.engines.commands import (
    MAX_ALIASES,
    MAX_ARGUMENT_HINT,
    MAX_COMMAND_DESCRIPTION,
    MAX_COMMANDS,
    from_cli,
    split_command,
    valid_name,
)
from vmagent.engines.demo import DEMO_COMMANDS, DemoEngine

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
names = st.sampled_from(["greet", "clear", "compact", "a:b", "_hidden", "bad name", ""]) | st.text(
    max_size=10
)
entries = st.fixed_dictionaries(
    {"name": names},
    optional={
        "description": st.text(max_size=400) | json_values,
        "argumentHint": st.text(max_size=200) | json_values,
        "aliases": st.lists(names, max_size=12) | json_values,
        "builtin": st.booleans(),
    },
)


@given(
    st.lists(entries | json_values, max_size=30) | json_values,
    st.none() | st.lists(names | json_values, max_size=10),
    st.lists(names, max_size=4),
)
def test_any_cli_answer_gives_well_formed_commands(
    listed: Any, slash: list[Any] | None, terminal: list[str]
) -> None:
    out = from_cli(listed, slash, terminal)
    assert len(out) <= MAX_COMMANDS
    assert len({c["name"] for c in out}) == len(out)
    for entry in out:
        assert set(entry) <= {"name", "description", "argumentHint", "aliases", "source"}
        assert entry.get("source", "project") in ("builtin", "project")
        assert valid_name(entry["name"])
        assert not entry["name"].startswith("_")
        assert entry["name"] not in terminal
        if slash is not None:
            assert entry["name"] in slash
        assert isinstance(entry["description"], str)
        assert len(entry["description"]) <= MAX_COMMAND_DESCRIPTION
        assert "\n" not in entry["description"]
        assert 0 < len(entry.get("argumentHint", "x")) <= MAX_ARGUMENT_HINT
        aliases = entry.get("aliases", ["x"])
        assert 0 < len(aliases) <= MAX_ALIASES
        assert all(valid_name(a) for a in aliases)
    json.dumps(out)


def test_the_cli_list_kept_in_step_with_the_init_line() -> None:
    listed = [
        {"name": "greet", "description": "Greet someone (project)", "argumentHint": "<name>"},
        {
            "name": "usage",
            "description": "Show cost",
            "aliases": ["cost", "bad alias"],
            "builtin": True,
        },
        {"name": "doctor", "description": "Terminal only"},
        {"name": "__remote-workflow", "description": "internal"},
        {"name": "gone", "description": "removed since"},
        {"name": "long", "description": "x" * 1000, "argumentHint": "a\nb"},
    ]
    assert [c["name"] for c in from_cli(listed)] == ["greet", "usage", "doctor", "gone", "long"]
    out = from_cli(listed, ["greet", "usage", "doctor", "long", "new-one"], ["doctor"])
    assert out == [
        {
            "name": "greet",
            "description": "Greet someone (project)",
            "argumentHint": "<name>",
            "source": "project",
        },
        {"name": "usage", "description": "Show cost", "aliases": ["cost"], "source": "builtin"},
        {
            "name": "long",
            "description": "x" * (MAX_COMMAND_DESCRIPTION - 1) + "…",
            "argumentHint": "a b",
        },
        {"name": "new-one", "description": ""},
    ]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("/greet world", ("greet", "world")),
        ("/greet", ("greet", "")),
        ("/greet  two words \n", ("greet", "two words")),
        ("/frontend:component Button", ("frontend:component", "Button")),
        ("/greet\nsecond line", ("greet", "second line")),
        ("greet world", None),
        ("/ greet", None),
        ("/greet!", None),
        ("//x", None),
        ("/" + "a" * 65, None),
    ],
)
def test_split_command(text: str, parsed: tuple[str, str] | None) -> None:
    assert split_command(text) == parsed


def test_command_files_are_read_as_claude_code_reads_them(tmp_path: Path) -> None:
    root = tmp_path / ".claude" / "commands"
    (root / "frontend").mkdir(parents=True)
    (root / "greet.md").write_text(
        "---\ndescription: Greet someone\nargument-hint: <name>\n---\nSay hi to $ARGUMENTS.\n"
    )
    (root / "frontend" / "component.md").write_text("Make a component named $ARGUMENTS\n")
    (root / "bad name.md").write_text("x")
    (root / "huge.md").write_text("x" * (demo_commands.MAX_COMMAND_FILE_BYTES + 1))
    (root / "latin1.md").write_bytes(b"\xff\xfe")
    (root / "notes.txt").write_text("not a command")
    outside = tmp_path / "secret.md"
    outside.write_text("secret")
    (root / "link.md").symlink_to(outside)
    files = demo_commands.read_all(tmp_path)
    assert [f.name for f in files] == ["frontend:component", "greet"]
    greet = files[1]
    assert (greet.description, greet.argument_hint) == ("Greet someone", "<name>")
    assert greet.expand("Ada") == "Say hi to Ada."
    assert files[0].description == "Make a component named $ARGUMENTS"
    assert demo_commands.listed(files)[1] == {
        "name": "greet",
        "description": "Greet someone (project)",
        "argumentHint": "<name>",
        "source": "project",
    }
    assert demo_commands.read_all(tmp_path / "nowhere") == []


async def request(conn: VmConn, request_id: str, op: str, **args: Any) -> dict[str, Any]:
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


def said(frames: list[dict[str, Any]]) -> str:
    return "".join(
        b.get("text", "")
        for f in frames
        if f["type"] == "claude_message" and f["data"]["type"] == "assistant"
        for b in f["data"]["message"]["content"]
    )


async def test_the_demo_lists_its_commands_and_the_repositorys_and_acts_on_them(
    tmp_path: Path, relay: FakeRelay
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(agent_for(relay, tmp_path, DemoEngine(word_delay=0)).run)
            conn = await relay.accept()
            await conn.recv()
            await conn.send({"type": "workspace_assigned", "workspaceId": "ws1", "issue": ISSUE})
            # Asked before the session is open: a clear "not yet", not an error.
            early = await request(conn, "r0", "session_commands")
            assert early["ok"] is True
            if not early["result"]["ready"]:
                assert early["result"]["commands"] == []
            await conn.until("status", workspaceId="ws1", status="idle")
            reply = await request(conn, "r1", "session_commands")
            assert reply["ok"] is True
            assert reply["result"]["ready"] is True
            offered = reply["result"]["commands"]
            assert [c["name"] for c in offered] == [*DEMO_COMMANDS, "explain"]
            assert offered[3] == {
                "name": "explain",
                "description": "Explain a file of the demo project (project)",
                "argumentHint": "<path>",
                "source": "project",
            }
            assert {c["source"] for c in offered[:3]} == {"builtin"}
            await say(conn, "/shout hello there", "c1")
            frames = await turn_frames(conn)
            init = next(f["data"] for f in frames if f["type"] == "claude_message")
            assert init["slash_commands"] == [c["name"] for c in offered]
            assert "Demo /shout: HELLO THERE" in said(frames)

            await say(conn, "/explain src/app.py", "c2")
            assert "Explain briefly what src/app.py does" in said(await turn_frames(conn))

            # A file written since: listed at once, and it runs.
            work = tmp_path / "state" / "workspaces" / "ws1" / "work"
            (work / ".claude" / "commands" / "fresh.md").write_text("Fresh $ARGUMENTS!")
            reply = await request(conn, "r2", "session_commands")
            assert "fresh" in [c["name"] for c in reply["result"]["commands"]]
            await say(conn, "/fresh air", "c3")
            assert "Fresh air!" in said(await turn_frames(conn))

            # Not a command of this session: an ordinary message.
            await say(conn, "/nosuch thing", "c4")
            assert "You said: “/nosuch thing”" in said(await turn_frames(conn))
            nursery.cancel_scope.cancel()


class _NoEngine:
    """An engine that never opens: the workspace stays in ``error``."""

    name = "none"

    def open(self, host: Any) -> Any:
        @contextlib.asynccontextmanager
        async def failing() -> AsyncIterator[Any]:
            await trio.lowlevel.checkpoint()
            if host is not None:  # always: the engine fails to open
                raise EngineError("no engine here")
            yield None

        return failing()


async def test_no_engine_session_is_a_clear_not_ready(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(agent_for(relay, tmp_path, _NoEngine()).run)
            conn = await relay.accept()
            await conn.recv()
            await conn.send({"type": "workspace_assigned", "workspaceId": "ws1", "issue": ISSUE})
            await conn.until("status", workspaceId="ws1", status="error")
            reply = await request(conn, "r1", "session_commands")
            assert reply["ok"] is True
            assert reply["result"] == {"commands": [], "ready": False}
            nursery.cancel_scope.cancel()


@given(st.text(max_size=300), st.text(max_size=40))
def test_any_command_file_parses_and_expands(text: str, arguments: str) -> None:
    parsed = demo_commands.parse("x", text)
    assert parsed.name == "x"
    assert "\n" not in demo_commands.listed([parsed])[0]["description"]
    expanded = parsed.expand(arguments)
    if "$ARGUMENTS" not in parsed.body:
        assert expanded == parsed.body.strip()


@given(st.text(max_size=80))
def test_split_command_gives_a_valid_name_or_nothing(text: str) -> None:
    parsed = split_command(text)
    if parsed is None:
        return
    name, arguments = parsed
    assert valid_name(name)
    assert text.startswith("/" + name)
    assert arguments == arguments.strip()


async def test_each_session_answers_for_itself_and_a_closed_one_refuses(
    tmp_path: Path, relay: FakeRelay
) -> None:
    with trio.fail_after(10):
        async with running(tmp_path, relay) as (conn, _hello):
            sid = await create(conn, "r1", "Other")
            reply = await op(conn, "session_commands", "r2", sid)
            assert reply["type"] == "reply"
            assert reply["ok"] is True
            assert reply["result"]["ready"] is True
            assert [c["name"] for c in reply["result"]["commands"]] == [*DEMO_COMMANDS, "explain"]
            closed = await op(conn, "session_close", "r3", sid)
            assert closed["ok"] is True
            reply = await op(conn, "session_commands", "r4", sid)
            assert reply["ok"] is False
            assert reply["error"]["code"] == "bad_request"
            assert "closed" in reply["error"]["message"]

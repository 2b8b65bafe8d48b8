"""The plan card's text: which plan file is read, and how much of it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmagent.engines.plans import (
    DEFAULT_MAX_PLAN,
    card_input,
    cut,
    plan_file,
    plans_dir,
    read_plan,
    written_plan,
)


def test_the_plans_directory_follows_the_cli_config_dir() -> None:
    assert plans_dir({"HOME": "/home/vm"}) == Path("/home/vm/.claude/plans")
    assert plans_dir({"HOME": "/home/vm", "CLAUDE_CONFIG_DIR": "/c"}) == Path("/c/plans")
    assert plans_dir({}) is None


@pytest.mark.parametrize(
    "path",
    [
        "/p/../p/x.md",  # not directly inside, even if it resolves there
        "/p/sub/x.md",
        "/other/x.md",
        "p/x.md",
        "/p/x.txt",
        "/p/.hidden.md",
        "/p/x\x00.md",
        "/p",
        None,
        7,
        ["/p/x.md"],
    ],
)
def test_only_a_plan_file_directly_inside_the_directory_is_taken(path: Any) -> None:
    assert plan_file(path, Path("/p")) is None


def test_a_plan_file_name_is_taken() -> None:
    assert plan_file("/p/plan-a-rename-tender-frost.md", Path("/p")) == Path(
        "/p/plan-a-rename-tender-frost.md"
    )
    assert plan_file("/p/x.md", None) is None


def test_written_plan_reads_the_cli_tool_result_only() -> None:
    directory = Path("/p")
    line = {"type": "user", "tool_use_result": {"type": "create", "filePath": "/p/a.md"}}
    assert written_plan(line, directory) == Path("/p/a.md")
    assert written_plan({**line, "type": "assistant"}, directory) is None
    assert written_plan({"type": "user", "tool_use_result": "Error: x"}, directory) is None
    outside = {"type": "user", "tool_use_result": {"filePath": "/etc/a.md"}}
    assert written_plan(outside, directory) is None


def test_read_plan_refuses_links_and_non_files(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "real.md").write_text("# Plan\n")
    assert read_plan(plans / "real.md", 1024) == "# Plan\n"
    secret = tmp_path / "secret.md"
    secret.write_text("not a plan")
    (plans / "link.md").symlink_to(secret)
    assert read_plan(plans / "link.md", 1024) is None
    (plans / "dir.md").mkdir()
    assert read_plan(plans / "dir.md", 1024) is None
    os.mkfifo(plans / "fifo.md")
    assert read_plan(plans / "fifo.md", 1024) is None  # and does not block
    assert read_plan(plans / "missing.md", 1024) is None
    # The directory itself swapped for a link to elsewhere.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.md").write_text("elsewhere")
    (tmp_path / "linked").symlink_to(elsewhere)
    assert read_plan(tmp_path / "linked" / "x.md", 1024) is None


def test_card_input_prefers_the_cli_plan_and_keeps_the_input(tmp_path: Path) -> None:
    file = tmp_path / "p.md"
    file.write_text("from the file")
    given_input = {"plan": "from the CLI", "planFilePath": str(file)}
    shown = card_input(given_input, file, DEFAULT_MAX_PLAN)
    assert shown["plan"] == "from the CLI"
    assert card_input({}, file, DEFAULT_MAX_PLAN) == {"plan": "from the file"}
    assert card_input({"plan": "  "}, file, DEFAULT_MAX_PLAN)["plan"] == "from the file"
    assert card_input({}, None, DEFAULT_MAX_PLAN) == {}
    assert card_input({}, tmp_path / "gone.md", DEFAULT_MAX_PLAN) == {}
    long = {"plan": "x" * 5000}
    assert len(card_input(long, None, 2048)["plan"]) <= 2048
    assert long == {"plan": "x" * 5000}  # what goes back to the CLI is untouched


@given(st.text(max_size=3000), st.integers(min_value=200, max_value=4096))
def test_cut_keeps_within_the_limit_and_says_so(text: str, limit: int) -> None:
    out = cut(text, limit)
    assert len(out.encode()) <= limit
    if len(text.encode("utf-8", errors="replace")) <= limit:
        assert out == text
    else:
        assert "the rest is not shown" in out
        assert text.startswith(out.split("\n\n*(The plan is longer")[0])


@given(
    st.dictionaries(
        st.text(max_size=20),
        st.one_of(st.none(), st.integers(), st.text(max_size=3000), st.lists(st.text())),
        max_size=5,
    )
)
def test_card_input_of_any_input_has_a_bounded_text_plan_or_none(tool_input: Any) -> None:
    shown = card_input(tool_input, None, 1024)
    plan = shown.get("plan")
    assert plan is None or plan == tool_input.get("plan") or len(plan.encode()) <= 1024
    if isinstance(tool_input.get("plan"), str) and tool_input["plan"].strip():
        assert isinstance(plan, str)
        assert len(plan.encode()) <= 1024
    assert {k: v for k, v in shown.items() if k != "plan"} == {
        k: v for k, v in tool_input.items() if k != "plan"
    }

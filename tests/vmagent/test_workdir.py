"""Working directories: a clone of a local bare repository through file://."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.vmagent.fakerelay import FakeRelay, VmConn, agent_for, say
from tests.vmagent.gitrepo import git, make_origin
from vmagent.engines.demo import DemoEngine
from vmagent.workdir import WorkdirError, WorkdirPlan, clone_url, prepare_workdir, redact


@contextlib.asynccontextmanager
async def cloning_agent(
    tmp_path: Path, origin: str
) -> AsyncIterator[tuple[VmConn, dict[str, Any]]]:
    """A demo agent that clones from ``origin``, on a fake relay: its connection and hello."""
    async with trio.open_nursery() as nursery:
        relay = await nursery.start(FakeRelay().run)
        plan = WorkdirPlan(clone=True, git_base_url=origin)
        await nursery.start(agent_for(relay, tmp_path, DemoEngine(word_delay=0), plan=plan).run)
        conn = await relay.accept()
        yield conn, await conn.recv()
        nursery.cancel_scope.cancel()


@pytest.fixture
def origin(tmp_path: Path) -> str:
    """A file:// base holding o/r.git with one commit on main and a branch ff/issue-8."""
    return make_origin(tmp_path)


def issue(number: int, repo: str = "r") -> dict[str, object]:
    return {
        "url": f"https://github.com/o/{repo}/issues/{number}",
        "owner": "o",
        "repo": repo,
        "number": number,
    }


async def test_clone_on_a_new_branch(tmp_path: Path, origin: str) -> None:
    work = tmp_path / "ws" / "work"
    work.parent.mkdir()
    with trio.fail_after(30):
        await prepare_workdir(WorkdirPlan(clone=True, git_base_url=origin), issue(7), work)
    assert (work / "README.md").read_text() == "hello\n"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=work).strip() == "ff/issue-7"
    assert not (work.parent / "work.partial").exists()
    # Again: the existing clone is kept as it is.
    (work / "local.txt").write_text("mine")
    with trio.fail_after(30):
        await prepare_workdir(WorkdirPlan(clone=True, git_base_url=origin), issue(7), work)
    assert (work / "local.txt").read_text() == "mine"


async def test_existing_remote_branch_is_checked_out(tmp_path: Path, origin: str) -> None:
    work = tmp_path / "work"
    with trio.fail_after(30):
        await prepare_workdir(WorkdirPlan(clone=True, git_base_url=origin), issue(8), work)
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=work).strip() == "ff/issue-8"
    assert (work / "WIP.md").exists()


async def test_clone_failure_is_readable(tmp_path: Path, origin: str) -> None:
    work = tmp_path / "work"
    with trio.fail_after(30), pytest.raises(WorkdirError) as caught:
        await prepare_workdir(
            WorkdirPlan(clone=True, git_base_url=origin), issue(1, "missing"), work
        )
    message = str(caught.value)
    assert message.startswith(f"git clone of {origin}/o/missing.git failed: ")
    assert len(message) > len(f"git clone of {origin}/o/missing.git failed: ")
    assert not work.exists()
    assert not (tmp_path / "work.partial").exists()


async def test_no_clone_makes_an_empty_directory(tmp_path: Path) -> None:
    work = tmp_path / "work"
    await prepare_workdir(WorkdirPlan(clone=False), issue(1), work)
    assert work.is_dir()
    assert list(work.iterdir()) == []


def test_clone_url_and_redaction() -> None:
    assert clone_url("https://github.com/", "o", "r") == "https://github.com/o/r.git"
    for owner, repo in [("..", "r"), ("o", "r/../../x"), ("-o", "r"), ("o", "")]:
        with pytest.raises(WorkdirError):
            clone_url("https://github.com", owner, repo)
    assert (
        redact("https://user:secret@git.example:8443/o/r.git") == "https://git.example:8443/o/r.git"
    )
    assert redact("file:///tmp/x") == "file:///tmp/x"


async def test_agent_reports_clone_failure_then_recovers(tmp_path: Path, origin: str) -> None:
    with trio.fail_after(30):
        async with cloning_agent(tmp_path, origin) as (conn, _hello):
            await conn.send(
                {"type": "workspace_assigned", "workspaceId": "bad", "issue": issue(2, "missing")}
            )
            status, _ = await conn.until("status", workspaceId="bad", status="error")
            assert "git clone of" in status["detail"]
            assert "missing.git" in status["detail"]
            await conn.send(
                {"type": "workspace_assigned", "workspaceId": "good", "issue": issue(5)}
            )
            await conn.until("status", workspaceId="good", status="idle")
            work = tmp_path / "state" / "workspaces" / "good" / "work"
            assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=work).strip() == "ff/issue-5"
            # The failed workspace tries again on the next message; it still fails, readably.
            await say(conn, "try again", "c1", ws="bad")
            status, _ = await conn.until("status", workspaceId="bad", status="error")
            assert "missing.git" in status["detail"]


async def test_a_log_started_over_waits_for_its_assignment_to_clone(
    tmp_path: Path, origin: str
) -> None:
    # A workspace whose log was damaged: the agent starts it over without the issue.
    log = tmp_path / "state" / "workspaces" / "ws1" / "log.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text('{"type":"_log", cut short')
    with trio.fail_after(30):
        async with cloning_agent(tmp_path, origin) as (conn, hello):
            assert [w["workspaceId"] for w in hello["workspaces"]] == ["ws1"]
            await conn.send({"type": "workspace_assigned", "workspaceId": "ws1", "issue": issue(4)})
            await conn.until("status", workspaceId="ws1", status="idle")
            work = tmp_path / "state" / "workspaces" / "ws1" / "work"
            assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=work).strip() == "ff/issue-4"
            assert any(p.name.startswith("log.jsonl.corrupt-") for p in log.parent.iterdir())

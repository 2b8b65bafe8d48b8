"""The demo engine's small real repository, so every panel has something to show.

Made once in an empty working directory (``--no-clone``), shaped like a real
workspace so Commit and Push work: a ``main`` with a few files, pushed to a
local bare repository as ``origin`` (``origin.git`` beside the working tree,
inside the workspace's own directory), the workspace branch ``ff/issue-N``
(:func:`vmagent.workdir.branch_name`) with one commit of its own (committed,
not pushed) and one edit left uncommitted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import trio

from vmagent.workdir import branch_name

#: The branch of a workspace with no issue number (the publishing ops refuse it anyway).
BRANCH: Final = "ff/demo"
#: The bare repository standing in for GitHub, in the workspace's directory.
ORIGIN_NAME: Final = "origin.git"
_GIT: Final = [
    "git",
    "-c",
    "user.name=Demo",
    "-c",
    "user.email=demo@example.invalid",
    "-c",
    "init.defaultBranch=main",
    "-c",
    "commit.gpgsign=false",
]
BASE_FILES: Final = {
    "README.md": "# Demo project\n\nA tiny project the demo engine works on.\n",
    "src/app.py": 'def greet(name: str) -> str:\n    return f"Hello, {name}!"\n',
    ".gitignore": "*.log\n__pycache__/\n",
    # A repository command, as Claude Code reads it (the slash command palette lists it).
    ".claude/commands/explain.md": (
        "---\ndescription: Explain a file of the demo project\nargument-hint: <path>\n---\n"
        "Explain briefly what $ARGUMENTS does and how it could be tested.\n"
    ),
}
NOTES: Final = "notes.md"


async def _git(workdir: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(workdir.parent)}
    done = await trio.run_process([*_GIT, *args], cwd=workdir, env=env, capture_stdout=True)
    return bytes(done.stdout).decode(errors="replace").strip()


def branch_for(issue: Mapping[str, Any] | None) -> str:
    """The branch the publishing ops expect for ``issue`` (pure)."""
    number = None if issue is None else issue.get("number")
    if isinstance(number, int) and not isinstance(number, bool):
        return branch_name(number)
    return BRANCH


def origin_of(workdir: Path) -> Path:
    """Where the demo's ``origin`` lives: beside ``work/``, never outside the workspace."""
    return workdir.parent / ORIGIN_NAME


async def _add_origin(workdir: Path) -> None:
    """A fresh bare ``origin`` holding ``main``, with ``origin/HEAD`` pointing at it.

    A local bare clone copies the objects in one process (a push would start a
    receive-pack that outlives a cancelled ``git push``).
    """
    origin = origin_of(workdir)
    await trio.to_thread.run_sync(lambda: shutil.rmtree(origin, ignore_errors=True))
    await _git(
        workdir.parent,
        "clone",
        "--quiet",
        "--bare",
        "--local",
        "--single-branch",
        "--branch",
        "main",
        "--",
        str(workdir),
        str(origin),
    )
    await _git(workdir, "remote", "add", "origin", str(origin))
    await _git(workdir, "update-ref", "refs/remotes/origin/main", "refs/heads/main")
    await _git(workdir, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")


async def _upgrade(workdir: Path, branch: str) -> None:
    """A demo repository made before it had an origin: add one, rename ``ff/demo``."""
    if "origin" not in (await _git(workdir, "remote")).split():
        await _add_origin(workdir)
    await _git(workdir, "branch", "--move", BRANCH, branch)


def _write(workdir: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


async def seed(workdir: Path, issue: Mapping[str, Any] | None = None) -> bool:
    """Make the demo repository in ``workdir`` unless it is one already; True if made.

    The branch is ``issue``'s workspace branch (:func:`branch_for`).
    """
    branch = branch_for(issue)
    if await trio.to_thread.run_sync((workdir / ".git").exists):
        old = workdir / ".git" / "refs" / "heads" / BRANCH
        if branch != BRANCH and await trio.to_thread.run_sync(old.is_file):
            await _upgrade(workdir, branch)
        return False
    await trio.to_thread.run_sync(lambda: workdir.mkdir(parents=True, exist_ok=True))
    await _git(workdir, "init", "--quiet")
    await trio.to_thread.run_sync(_write, workdir, BASE_FILES)
    await _git(workdir, "add", "--", *BASE_FILES)
    await _git(workdir, "commit", "--quiet", "-m", "Demo project")
    await _add_origin(workdir)
    await _git(workdir, "checkout", "--quiet", "-b", branch)
    await trio.to_thread.run_sync(
        _write,
        workdir,
        {"src/app.py": BASE_FILES["src/app.py"] + '\n\ndef bye() -> str:\n    return "Bye!"\n'},
    )
    await _git(workdir, "commit", "--quiet", "-a", "-m", "Say goodbye too")
    await trio.to_thread.run_sync(
        _write, workdir, {"README.md": BASE_FILES["README.md"] + "\nEdited by the demo.\n"}
    )
    return True


def append_note(workdir: Path, text: str) -> None:
    """What the demo's ``edit`` does: one line more in notes.md (blocking: run in a thread)."""
    with (workdir / NOTES).open("a") as fh:
        fh.write(f"- {text.strip()[:200]}\n")

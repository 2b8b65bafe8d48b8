"""The demo engine's small real repository, so every panel has something to show.

Made once in an empty working directory (``--no-clone``): a ``main`` with a
few files, a branch ``ff/demo`` with one commit of its own (committed, not
pushed: there is no remote) and one edit left uncommitted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import trio

BRANCH: Final = "ff/demo"
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


async def _git(workdir: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(workdir.parent)}
    await trio.run_process([*_GIT, *args], cwd=workdir, env=env, capture_stdout=True)


def _write(workdir: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


async def seed(workdir: Path) -> bool:
    """Make the demo repository in ``workdir`` unless it is one already; True if made."""
    if await trio.to_thread.run_sync((workdir / ".git").exists):
        return False
    await trio.to_thread.run_sync(lambda: workdir.mkdir(parents=True, exist_ok=True))
    await _git(workdir, "init", "--quiet")
    await trio.to_thread.run_sync(_write, workdir, BASE_FILES)
    await _git(workdir, "add", "--", *BASE_FILES)
    await _git(workdir, "commit", "--quiet", "-m", "Demo project")
    await _git(workdir, "checkout", "--quiet", "-b", BRANCH)
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

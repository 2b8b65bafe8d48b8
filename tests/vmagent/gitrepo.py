"""A local bare repository to clone through file:// in tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

GIT = [
    "git",
    "-c",
    "user.name=Test",
    "-c",
    "user.email=test@example.invalid",
    "-c",
    "init.defaultBranch=main",
]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_origin(tmp_path: Path) -> str:
    """A file:// base holding o/r.git with one commit on main and a branch ff/issue-8."""
    base = tmp_path / "origin"
    bare = base / "o" / "r.git"
    bare.parent.mkdir(parents=True)
    git("init", "--bare", "--quiet", str(bare))
    seed = tmp_path / "seed"
    git("init", "--quiet", str(seed))
    (seed / "README.md").write_text("hello\n")
    git("add", "README.md", cwd=seed)
    git("commit", "--quiet", "-m", "first", cwd=seed)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/main", cwd=seed)
    git("checkout", "--quiet", "-b", "ff/issue-8", cwd=seed)
    (seed / "WIP.md").write_text("earlier work\n")
    git("add", "WIP.md", cwd=seed)
    git("commit", "--quiet", "-m", "wip", cwd=seed)
    git("push", "--quiet", str(bare), "ff/issue-8", cwd=seed)
    return f"file://{base}"

"""The panels' ops on a working tree: how long changes, diff, files and file take.

A repository of N files (default 2000) in 50 folders, 5% of them changed
after the base commit (half committed, half not), one long file. Each op is
run R times (default 20); the median and the slowest are printed, with the
reply's size.

Run: .venv/bin/python bench/workspace_ops.py [N] [R]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from vmagent.workspace_ops import OpLimits, run_op
from wire.codec import dumps

GIT = [
    "git",
    "-c",
    "user.name=B",
    "-c",
    "user.email=b@example.invalid",
    "-c",
    "init.defaultBranch=main",
]


def git(root: Path, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True)


def make_repo(root: Path, n: int) -> None:
    git(root, "init", "--quiet")
    for i in range(n):
        path = root / f"dir{i % 50}" / f"file{i}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(f"line {j} of file {i}\n" for j in range(40)))
    (root / "long.txt").write_text("".join(f"row {j}\n" for j in range(50_000)))
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "base")
    git(root, "checkout", "--quiet", "-b", "ff/bench")
    changed = range(0, n, 20)
    for k, i in enumerate(changed):
        path = root / f"dir{i % 50}" / f"file{i}.py"
        path.write_text(path.read_text() + "one more line\n")
        if k % 2 == 0:
            git(root, "add", str(path))
    git(root, "commit", "--quiet", "-m", "half")
    (root / "long.txt").write_text("".join(f"row {j}!\n" for j in range(50_000)))


async def timed(root: Path, op: str, args: dict[str, Any], rounds: int) -> tuple[list[float], int]:
    times: list[float] = []
    size = 0
    for _ in range(rounds):
        start = time.perf_counter()
        result = await run_op(root, op, args, OpLimits())
        times.append(time.perf_counter() - start)
        size = len(dumps(result))
    return times, size


async def main(n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        make_repo(root, n)
        print(f"repository: {n} files, {len(range(0, n, 20))} changed, rounds {rounds}")
        cases = [
            ("changes", {}),
            ("files", {}),
            ("diff", {"path": "dir0/file0.py"}),
            ("diff", {"path": "long.txt"}),
            ("file", {"path": "long.txt"}),
        ]
        for op, args in cases:
            times, size = await timed(root, op, args, rounds)
            label = f"{op} {args.get('path', '')}".strip()
            print(
                f"{label:28} median {statistics.median(times) * 1000:7.1f} ms"
                f"  max {max(times) * 1000:7.1f} ms  reply {size:>9,} chars"
            )


if __name__ == "__main__":
    trio.run(
        main,
        int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 20,
    )

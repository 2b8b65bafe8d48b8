"""The ``session_commands`` op on the claude engine: how long the slash commands take.

Cold: a session whose Claude Code has not run yet (the first "/" a user
types): the CLI is started and answers ``initialize``. Warm: the CLI runs,
the list is the one it gave. Each with a working tree holding N repository
commands (``.claude/commands/*.md``; default 0 and 100), R times each
(default 5 cold, 200 warm); the median and the slowest are printed, with
how many commands were listed.

The CLI talks to the tests' fake Messages API on loopback (it asks nothing
of it to list commands).

Run: .venv/bin/python bench/session_commands.py [R]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from tests.support.fake_anthropic import FakeAnthropic
from vmagent.engines.base import Decision, SessionSettings
from vmagent.engines.claude import ClaudeEngine
from wire.messages import Answer


class _Host:
    """Just enough of a workspace for the engine to start its CLI."""

    def __init__(self, workdir: Path) -> None:
        self.workspace_id = "bench"
        self.workdir = workdir
        self.issue: dict[str, Any] | None = None
        self.session_id: str | None = None
        self.settings = SessionSettings()
        self.bypass_allowed = False

    def emit(self, line: str) -> None:
        pass

    async def ask_question(self, questions: list[dict[str, Any]]) -> dict[str, Answer]:
        raise AssertionError("no questions while listing commands")

    async def ask_permission(
        self, tool_name: str, tool_input: dict[str, Any], tool_use_id: str | None
    ) -> Decision:
        raise AssertionError("no tools while listing commands")


def _tree(root: Path, n: int) -> None:
    commands = root / ".claude" / "commands"
    commands.mkdir(parents=True)
    for i in range(n):
        (commands / f"cmd{i}.md").write_text(
            f"---\ndescription: Command number {i}\nargument-hint: <what>\n---\nDo $ARGUMENTS.\n"
        )


def _line(label: str, seconds: list[float], listed: int) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return (
        f"{label:<28} median {statistics.median(ms):8.2f} ms   slowest {ms[-1]:8.2f} ms"
        f"   ({len(ms)} runs, {listed} commands listed)"
    )


async def main(cold_runs: int, warm_runs: int) -> None:
    async with trio.open_nursery() as nursery:
        fake: FakeAnthropic = await nursery.start(FakeAnthropic().run)
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            home.mkdir()
            engine = ClaudeEngine(
                env={
                    "HOME": str(home),
                    "ANTHROPIC_BASE_URL": fake.url,
                    "ANTHROPIC_API_KEY": "sk-bench",
                    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                    "DISABLE_AUTOUPDATER": "1",
                }
            )
            for n in (0, 100):
                work = Path(tmp) / f"work{n}"
                work.mkdir()
                _tree(work, n)
                cold: list[float] = []
                warm: list[float] = []
                listed = 0
                for _ in range(cold_runs):
                    async with engine.open(_Host(work)) as session:
                        started = time.perf_counter()
                        listed = len(await session.commands())
                        cold.append(time.perf_counter() - started)
                        for _ in range(warm_runs if not warm else 0):
                            started = time.perf_counter()
                            await session.commands()
                            warm.append(time.perf_counter() - started)
                print(_line(f"cold, {n} repository cmds", cold, listed))
                print(_line(f"warm, {n} repository cmds", warm, listed))
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    trio.run(main, runs, 200)

"""vmagent.terminals with real PTYs and real shells: echo, resize through
``stty size``, the working directory, the bounds, and close killing the
shell's whole process group."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from vmagent.terminals import TerminalLimits, Terminals
from wire.messages import Request, TerminalClose, TerminalInput, TerminalResize

#: Long enough for a loaded machine to start a shell, short enough to fail fast.
WAIT = 15.0
#: bash without the machine's dotfiles (a slow ~/.bashrc must not stall a test).
PLAIN_SHELL = Path(__file__).resolve().parents[1] / "support" / "plain-shell"


class Harness:
    """Terminals posting into a list, with helpers to wait for frames."""

    def __init__(self, work: Path, **limits: Any) -> None:
        self.frames: list[dict[str, Any]] = []
        self.terminals = Terminals(
            lambda frame: self.frames.append(json.loads(frame)),
            lambda _ws: work,
            limits=TerminalLimits(shell=str(PLAIN_SHELL), **limits),
        )

    def open(self, rid: str = "r1", conn: str = "c1", **args: Any) -> dict[str, Any]:
        self.terminals.open(
            Request(
                workspace_id="w1",
                request_id=rid,
                op="terminal_open",
                args=args,
                connection_id=conn,
            )
        )
        replies = [f for f in self.frames if f["type"] == "reply" and f["requestId"] == rid]
        assert len(replies) == 1
        return replies[0]

    def typed(self, tid: str, data: str, conn: str = "c1") -> None:
        self.terminals.input(
            TerminalInput(workspace_id="w1", terminal_id=tid, data=data, connection_id=conn)
        )

    def output(self, tid: str) -> str:
        return "".join(
            f["data"]
            for f in self.frames
            if f["type"] == "terminal_output" and f["terminalId"] == tid
        )

    async def wait_for(self, check: Callable[[], bool]) -> None:
        with trio.fail_after(WAIT):
            while not check():  # noqa: ASYNC110 - a real PTY: nothing to wait on but time
                await trio.sleep(0.02)

    async def wait_output(self, tid: str, text: str) -> None:
        await self.wait_for(lambda: text in self.output(tid))

    def exits(self, tid: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "terminal_exit" and f["terminalId"] == tid]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(h.terminals.run)
        yield h
        nursery.cancel_scope.cancel()


async def test_typing_runs_in_the_shell_in_the_working_directory(
    harness: Harness, tmp_path: Path
) -> None:
    tid = harness.open()["result"]["terminalId"]
    # The sum is computed by the shell: "42" is not in what was typed.
    harness.typed(tid, "echo $((6*7))\r")
    await harness.wait_output(tid, "\r42\r\n")
    harness.typed(tid, "pwd\r")
    await harness.wait_output(tid, f"\r{tmp_path}\r\n")
    # Colours pass through untouched: an escape sequence is data like any other.
    harness.typed(tid, "printf '\\033[31mred\\033[0m\\n'\r")
    await harness.wait_output(tid, "\x1b[31mred\x1b[0m")


async def test_the_size_and_a_resize_reach_the_pty(harness: Harness) -> None:
    tid = harness.open(cols=100, rows=30)["result"]["terminalId"]
    harness.typed(tid, "stty size\r")
    await harness.wait_output(tid, "\r30 100\r\n")
    harness.terminals.resize(
        TerminalResize(workspace_id="w1", terminal_id=tid, cols=132, rows=43, connection_id="c1")
    )
    harness.typed(tid, "stty size\r")
    await harness.wait_output(tid, "\r43 132\r\n")


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


async def test_close_kills_the_shell_and_its_process_group(harness: Harness) -> None:
    tid = harness.open()["result"]["terminalId"]
    term = harness.terminals.open_terminals[("w1", tid)]
    # A background job ignoring SIGHUP, in a process group of its own (job
    # control): only killing the whole session ends it.
    harness.typed(tid, "trap '' HUP; sleep 1000 & echo bg=$!\r")
    await harness.wait_for(lambda: "bg=" in harness.output(tid).replace("bg=$!", ""))
    text = harness.output(tid).replace("bg=$!", "")
    child = int(text.split("bg=", 1)[1].split()[0])
    assert _alive(child)
    assert _alive(term.proc.pid)
    harness.terminals.close(TerminalClose(workspace_id="w1", terminal_id=tid, connection_id="c1"))
    await harness.wait_for(lambda: bool(harness.exits(tid)))
    (end,) = harness.exits(tid)
    assert (end["reason"], end["connectionId"]) == ("closed", "c1")
    assert term.proc.returncode is not None
    await harness.wait_for(lambda: not _alive(child))
    assert harness.terminals.open_terminals == {}
    with pytest.raises(OSError):
        os.fstat(term.master)  # the PTY's fd is closed too


async def test_a_shell_that_exits_ends_the_terminal_with_its_code(harness: Harness) -> None:
    tid = harness.open()["result"]["terminalId"]
    harness.typed(tid, "exit 3\r")
    await harness.wait_for(lambda: bool(harness.exits(tid)))
    (end,) = harness.exits(tid)
    assert (end["reason"], end["exitCode"]) == ("exited", 3)


async def test_only_the_opening_connection_drives_a_terminal(harness: Harness) -> None:
    tid = harness.open()["result"]["terminalId"]
    harness.typed(tid, "echo from-c2-$((1+1))\r", conn="c2")
    harness.terminals.close(TerminalClose(workspace_id="w1", terminal_id=tid, connection_id="c2"))
    harness.typed(tid, "echo from-c1-$((2+2))\r")
    await harness.wait_output(tid, "from-c1-4")
    assert "from-c2-2" not in harness.output(tid)
    assert harness.exits(tid) == []


async def test_the_bounds_and_bad_sizes(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_per_connection=2, max_total=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(h.terminals.run)
        assert h.open("r1")["ok"]
        assert h.open("r2")["ok"]
        assert h.open("r3")["error"]["code"] == "rate_limited"
        assert h.open("r4", conn="c2")["ok"]
        assert h.open("r5", conn="c3")["error"]["code"] == "rate_limited"
        assert h.open("r6", conn="c3", cols=0)["error"]["code"] == "bad_request"
        assert h.open("r7", conn="c3", rows="24")["error"]["code"] == "bad_request"
        h.terminals.close_all()
        await h.wait_for(lambda: h.terminals.open_terminals == {})
        # A closed relay connection sends no terminal_exit: there is no one to get it.
        assert [f for f in h.frames if f["type"] == "terminal_exit"] == []
        nursery.cancel_scope.cancel()


async def test_terminals_turned_off(tmp_path: Path) -> None:
    h = Harness(tmp_path, enabled=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(h.terminals.run)
        answer = h.open()
        assert (answer["ok"], answer["error"]["code"]) == (False, "forbidden")
        assert h.terminals.open_terminals == {}
        nursery.cancel_scope.cancel()


async def test_output_is_chunked_and_paced(tmp_path: Path) -> None:
    h = Harness(tmp_path, chunk_bytes=1024, output_rate=64 * 1024)
    async with trio.open_nursery() as nursery:
        await nursery.start(h.terminals.run)
        tid = h.open()["result"]["terminalId"]
        h.typed(tid, "head -c 200000 /dev/zero | tr '\\0' x; echo; echo done-$((5*5))\r")
        await h.wait_output(tid, "done-25")
        chunks = [
            f["data"] for f in h.frames if f["type"] == "terminal_output" and f["terminalId"] == tid
        ]
        assert max(len(c.encode()) for c in chunks) <= 1024
        assert h.output(tid).count("x") >= 200000
        nursery.cancel_scope.cancel()

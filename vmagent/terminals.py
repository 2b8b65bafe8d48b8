"""Terminals: a real PTY on the VM per ``terminal_open`` (docs/protocol.md, "Terminals").

Each terminal is the user's shell in the workspace's working directory, on
the slave side of a fresh PTY, in a session of its own (so closing it kills
its whole process group). Its output is read without blocking, coalesced
into chunks of at most ``chunk_bytes`` and posted as ``terminal_output``
for the one connection that opened it; nothing of it enters a log.

Bounds: ``max_per_connection`` and ``max_total`` open terminals,
``output_rate`` bytes per second per terminal (a token bucket), and the
VM's outgoing queue: while it is more than half full the terminal stops
reading its PTY, so a busy shell blocks on its own writes and never
crowds the conversation's frames out (nor makes the agent drop its
connection). relayd closes a client that reads too slowly (4008).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import fcntl
import logging
import os
import pwd
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from vmagent.op_server import reply_frame
from wire.childenv import allowed_env
from wire.codec import dumps
from wire.messages import (
    MAX_TERMINAL_SIZE,
    Request,
    TerminalClose,
    TerminalInput,
    TerminalResize,
)
from wire.protocol import ErrorCode, VmType

log = logging.getLogger("vmagent")

DEFAULT_MAX_TERMINALS_PER_CONNECTION: Final = 4
DEFAULT_MAX_TERMINALS: Final = 16
DEFAULT_TERMINAL_CHUNK_BYTES: Final = 16 * 1024
DEFAULT_TERMINAL_OUTPUT_RATE: Final = 256 * 1024
#: How long a first read waits for more output to join it in one frame.
COALESCE_SECONDS: Final = 0.005
#: How long a paused terminal waits before it looks at the outgoing queue again.
PAUSE_SECONDS: Final = 0.02
#: How long a closed shell has between SIGHUP and SIGKILL.
HANGUP_GRACE: Final = 0.5
#: Keystroke frames queued per terminal before more are refused.
INPUT_QUEUE: Final = 64
#: The environment a terminal's shell gets: what any program needs, and TERM.
TERMINAL_TERM: Final = "xterm-256color"


@attrs.frozen
class TerminalLimits:
    """The bounds of terminals on one VM (vmagent's ``--max-terminals*``, ``--terminal-*``)."""

    enabled: bool = True
    max_per_connection: int = DEFAULT_MAX_TERMINALS_PER_CONNECTION
    max_total: int = DEFAULT_MAX_TERMINALS
    chunk_bytes: int = DEFAULT_TERMINAL_CHUNK_BYTES
    output_rate: int = DEFAULT_TERMINAL_OUTPUT_RATE
    shell: str | None = None


def default_shell(env: Mapping[str, str]) -> str:
    """The user's shell: ``$SHELL``, else the password database's, else /bin/bash."""
    shell = env.get("SHELL")
    if shell and Path(shell).is_absolute():
        return shell
    with contextlib.suppress(KeyError):
        entry = pwd.getpwuid(os.getuid()).pw_shell
        if entry and Path(entry).is_absolute():
            return entry
    return "/bin/bash"


def set_size(fd: int, cols: int, rows: int) -> None:
    """Set a PTY's window size (the kernel tells its foreground group with SIGWINCH)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


#: Runs in the child before the shell: a new session whose controlling
#: terminal is the PTY (job control and SIGWINCH work), then the shell itself.
#: A separate interpreter rather than ``preexec_fn``, which is unsafe with threads.
_SESSION_LEADER: Final = (
    "import fcntl, os, sys, termios\n"
    "os.setsid()\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)


def spawn(shell: str, cwd: Path, cols: int, rows: int) -> tuple[int, subprocess.Popen[bytes]]:
    """A shell on a new PTY in ``cwd``: the PTY's master fd (non-blocking) and the process."""
    master, slave = os.openpty()
    try:
        set_size(slave, cols, rows)
        env = allowed_env(os.environ, ())
        env["TERM"] = TERMINAL_TERM
        env["SHELL"] = shell
        env.setdefault("LANG", "C.UTF-8")
        proc = subprocess.Popen(
            [sys.executable, "-c", _SESSION_LEADER, shell, "-i"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            close_fds=True,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return master, proc


def session_members(sid: int, proc_dir: Path = Path("/proc")) -> list[int]:
    """Every process of session ``sid`` (Linux's /proc; none elsewhere)."""
    members = []
    with contextlib.suppress(OSError):
        for entry in proc_dir.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                # The fields after the command's ")": state ppid pgrp session ...
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 3 and fields[3] == str(sid):
                members.append(int(entry.name))
    return members


def kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the shell's process group and, for SIGKILL, its whole session: a
    job the shell put in a group of its own (``cmd &``) must not outlive it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    if sig == signal.SIGKILL:
        for pid in session_members(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


@attrs.define(eq=False)
class Terminal:
    """One open terminal: its PTY, its shell, and whom its output is for."""

    terminal_id: str
    workspace_id: str
    connection_id: str
    master: int
    proc: subprocess.Popen[bytes]
    inputs: trio.MemorySendChannel[bytes]
    input_queue: trio.MemoryReceiveChannel[bytes]
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    reason: str = "exited"


class Terminals:
    """The open terminals of this VM, run in :meth:`run`'s nursery."""

    def __init__(
        self,
        post: Callable[[str], None],
        work_dir: Callable[[str], Path],
        *,
        limits: TerminalLimits,
        room: Callable[[], bool] = lambda: True,
    ) -> None:
        self._post = post
        self._work_dir = work_dir
        self.limits = limits
        self._room = room
        self._shell = limits.shell or default_shell(os.environ)
        self.open_terminals: dict[tuple[str, str], Terminal] = {}
        self._nursery: trio.Nursery | None = None
        self._next = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the terminals until cancelled (then every one is killed)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    # -- from clients -------------------------------------------------------------

    def open(self, request: Request) -> None:
        """``request`` ``terminal_open``: a new terminal, answered with its ``terminalId``."""

        def refuse(code: ErrorCode, message: str) -> None:
            self._post(reply_frame(request, code=code, message=message))

        limits = self.limits
        conn = request.connection_id
        if not limits.enabled:
            return refuse(ErrorCode.FORBIDDEN, "terminals are turned off on this VM")
        if conn is None or self._nursery is None:
            return refuse(ErrorCode.BAD_REQUEST, "a terminal needs a client connection")
        try:
            cols, rows = _size(request.args)
        except ValueError as exc:
            return refuse(ErrorCode.BAD_REQUEST, str(exc))
        mine = sum(1 for t in self.open_terminals.values() if t.connection_id == conn)
        if mine >= limits.max_per_connection:
            return refuse(ErrorCode.RATE_LIMITED, "too many terminals open on this connection")
        if len(self.open_terminals) >= limits.max_total:
            return refuse(ErrorCode.RATE_LIMITED, "too many terminals open on this VM")
        cwd = self._work_dir(request.workspace_id)
        if not cwd.is_dir():
            return refuse(ErrorCode.NOT_FOUND, "the workspace has no working directory yet")
        try:
            master, proc = spawn(self._shell, cwd, cols, rows)
        except OSError as exc:
            return refuse(ErrorCode.BAD_REQUEST, f"cannot start a shell: {exc.strerror or exc}")
        self._next += 1
        terminal_id = f"t{self._next}"
        send, receive = trio.open_memory_channel[bytes](INPUT_QUEUE)
        term = Terminal(terminal_id, request.workspace_id, conn, master, proc, send, receive)
        self.open_terminals[(request.workspace_id, terminal_id)] = term
        # The reply goes out before any output: the client books the id first.
        self._post(reply_frame(request, result={"terminalId": terminal_id}))
        self._nursery.start_soon(self._run, term)
        log.info(
            "terminal opened",
            extra={"workspaceId": request.workspace_id, "terminalId": terminal_id, "pid": proc.pid},
        )
        return None

    def _mine(self, workspace_id: str, terminal_id: str, conn: str | None) -> Terminal | None:
        term = self.open_terminals.get((workspace_id, terminal_id))
        return term if term is not None and term.connection_id == conn else None

    def input(self, message: TerminalInput) -> None:
        """Keystrokes for a terminal; a terminal that is not this connection's ignores them."""
        term = self._mine(message.workspace_id, message.terminal_id, message.connection_id)
        if term is None:
            return
        try:
            term.inputs.send_nowait(message.data.encode("utf-8", "surrogateescape"))
        except trio.WouldBlock:
            log.info("terminal input queue full; keystrokes dropped")

    def resize(self, message: TerminalResize) -> None:
        """A new window size for the PTY."""
        term = self._mine(message.workspace_id, message.terminal_id, message.connection_id)
        if term is not None:
            with contextlib.suppress(OSError):
                set_size(term.master, message.cols, message.rows)

    def close(self, message: TerminalClose) -> None:
        """End a terminal: its process group is hung up, then killed."""
        term = self._mine(message.workspace_id, message.terminal_id, message.connection_id)
        if term is not None:
            term.reason = "closed"
            term.scope.cancel()

    def close_all(self) -> None:
        """End every terminal (the connection to relayd, and so every client's, ended)."""
        for term in self.open_terminals.values():
            term.reason = "disconnected"
            term.scope.cancel()

    # -- one terminal -------------------------------------------------------------

    async def _run(self, term: Terminal) -> None:
        try:
            with term.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, term)
                    await self._reader(term)
                    nursery.cancel_scope.cancel()
        finally:
            del self.open_terminals[(term.workspace_id, term.terminal_id)]
            with trio.CancelScope(shield=True):
                exit_code = await self._reap(term, grace=HANGUP_GRACE)
            os.close(term.master)
            term.inputs.close()
            body: dict[str, Any] = {
                "type": VmType.TERMINAL_EXIT,
                "workspaceId": term.workspace_id,
                "terminalId": term.terminal_id,
                "connectionId": term.connection_id,
                "reason": term.reason,
            }
            if exit_code is not None and term.reason == "exited":
                body["exitCode"] = exit_code
            if term.reason != "disconnected":
                self._post(dumps(body))
            log.info(
                "terminal ended",
                extra={"terminalId": term.terminal_id, "reason": term.reason, "code": exit_code},
            )

    async def _reap(self, term: Terminal, *, grace: float) -> int | None:
        """Hang the group up, give it ``grace`` seconds, then kill it; the exit code."""
        proc = term.proc
        if not _exited(proc):
            kill_group(proc, signal.SIGHUP)
            with trio.move_on_after(grace):
                # Polled: nothing wakes a task when a child exits without reaping it.
                while not _exited(proc):  # noqa: ASYNC110
                    await trio.sleep(0.01)
        # Whatever the shell left behind in its group goes too (no orphans).
        # The shell is not reaped yet, so its group id cannot name anyone else.
        kill_group(proc, signal.SIGKILL)
        await trio.to_thread.run_sync(proc.wait)
        return proc.returncode

    async def _reader(self, term: Terminal) -> None:
        """PTY output to ``terminal_output`` frames, coalesced, paced, until EOF."""
        limits = self.limits
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        budget = float(limits.chunk_bytes)
        last = trio.current_time()
        while True:
            await trio.lowlevel.wait_readable(term.master)
            await trio.sleep(COALESCE_SECONDS)  # let a burst gather into one frame
            try:
                data = os.read(term.master, limits.chunk_bytes)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # Linux: every slave fd closed, the shell is gone
                    return
                raise
            if not data:
                return
            text = decoder.decode(data)
            if text:
                self._post(
                    dumps(
                        {
                            "type": VmType.TERMINAL_OUTPUT,
                            "workspaceId": term.workspace_id,
                            "terminalId": term.terminal_id,
                            "connectionId": term.connection_id,
                            "data": text,
                        }
                    )
                )
            # Pace: a token bucket of output_rate bytes a second, at most one
            # chunk of burst; while it is empty (or the outgoing queue is
            # filling) the PTY is not read, and the shell waits on its writes.
            now = trio.current_time()
            budget = min(float(limits.chunk_bytes), budget + (now - last) * limits.output_rate)
            last = now
            budget -= len(data)
            if budget < 0:
                await trio.sleep(-budget / limits.output_rate)
            # Polled: the outgoing queue has no "space again" event to wait on.
            while not self._room():  # noqa: ASYNC110
                await trio.sleep(PAUSE_SECONDS)

    async def _writer(self, term: Terminal) -> None:
        async for data in term.input_queue:
            view = memoryview(data)
            while view:
                await trio.lowlevel.wait_writable(term.master)
                try:
                    written = os.write(term.master, view)
                except BlockingIOError:
                    continue
                except OSError:
                    return  # the shell is gone; the reader sees it too
                view = view[written:]


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the shell has exited, without reaping it (its pid stays reserved)."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _size(args: Mapping[str, Any]) -> tuple[int, int]:
    """``cols`` and ``rows`` of ``terminal_open`` (80 by 24 when not given)."""
    out = []
    for name, fallback in (("cols", 80), ("rows", 24)):
        value = args.get(name, fallback)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer")
        if not 1 <= value <= MAX_TERMINAL_SIZE:
            raise ValueError(f"{name} must be from 1 to {MAX_TERMINAL_SIZE}")
        out.append(value)
    return out[0], out[1]

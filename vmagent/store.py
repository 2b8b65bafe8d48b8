"""The conversation logs on disk: one append-only JSON-lines file per workspace.

Layout under ``--state-dir``::

    workspaces/<workspaceId>/log.jsonl          main's log (frames as sent, plus meta records)
    workspaces/<workspaceId>/log.jsonl.corrupt-<time>   a log that could not be read, kept aside
    workspaces/<workspaceId>/sessions/<sessionId>.jsonl the log of each other session
    workspaces/<workspaceId>/work/              the working directory (the clone)

Lines are written with one ``write`` each, before the frame is sent, and
fsync'd when the :class:`~vmagent.conversation.Out` asks for it (accepted
user messages, questions, decisions, meta records). A line cut short by a
crash makes the log unreadable: it is set aside and a new epoch starts, so no
peer ever sees one seq stand for two different messages.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from vmagent.conversation import Conversation, CorruptLog, Out
from vmagent.session_list import MAIN_SESSION, utc_now
from wire.protocol import is_session_id

log = logging.getLogger("vmagent.store")

LOG_NAME: Final = "log.jsonl"
WORK_NAME: Final = "work"
SESSIONS_NAME: Final = "sessions"
#: Workspace ids become directory names, so only these are accepted.
WORKSPACE_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def valid_workspace_id(workspace_id: str) -> bool:
    """True when ``workspace_id`` is safe to use as a directory name."""
    return WORKSPACE_ID_RE.fullmatch(workspace_id) is not None


class LogFile:
    """An open, append-only log file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def append(self, outs: Iterable[Out]) -> None:
        """Write the records meant for the log, then fsync if any asks for it.

        fsync runs on the event loop on purpose: it happens only for
        human-paced events, and doing it inline keeps log order and send order
        the same without a lock.
        """
        data = b"".join(o.frame.encode() + b"\n" for o in outs if o.log)
        if not data:
            return
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if any(o.sync and o.log for o in outs):
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the file descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Store:
    """The state directory: finds, opens and creates workspace logs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workspaces = root / "workspaces"

    def prepare(self) -> None:
        """Create the state directory (mode 0700) if needed."""
        self.workspaces.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)

    def workspace_dir(self, workspace_id: str) -> Path:
        """The directory of one workspace."""
        if not valid_workspace_id(workspace_id):
            raise ValueError("workspace id is not usable as a directory name")
        return self.workspaces / workspace_id

    def work_dir(self, workspace_id: str) -> Path:
        """Where the workspace's clone lives."""
        return self.workspace_dir(workspace_id) / WORK_NAME

    def log_path(self, workspace_id: str, sid: str = MAIN_SESSION) -> Path:
        """Where a session's log lives (main's: where a workspace's log always was)."""
        directory = self.workspace_dir(workspace_id)
        if sid == MAIN_SESSION:
            return directory / LOG_NAME
        if not is_session_id(sid):
            raise ValueError("session id is not usable as a file name")
        return directory / SESSIONS_NAME / f"{sid}.jsonl"

    def delete(self, workspace_id: str, sid: str) -> None:
        """Delete a session's log (a closed one past the limit); never main's."""
        if sid == MAIN_SESSION:
            raise ValueError("main's log is never deleted")
        path = self.log_path(workspace_id, sid)
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def known_ids(self) -> list[str]:
        """Workspaces that have a log on disk."""
        if not self.workspaces.is_dir():
            return []
        return sorted(
            p.name
            for p in self.workspaces.iterdir()
            if valid_workspace_id(p.name) and (p / LOG_NAME).is_file()
        )

    def open(self, workspace_id: str, sid: str = MAIN_SESSION) -> tuple[Conversation, LogFile]:
        """Open a session's log, creating it, or replacing an unreadable one."""
        path = self.log_path(workspace_id, sid)
        directory = path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            try:
                with path.open(encoding="utf-8", newline="") as f:
                    conv = Conversation.restore(workspace_id, f, sid)
                return conv, LogFile(path)
            except (CorruptLog, UnicodeDecodeError) as exc:
                aside = path.with_name(
                    f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
                    f"-{os.urandom(3).hex()}"
                )
                path.rename(aside)
                log.warning(
                    "unreadable log set aside; starting a new epoch",
                    extra={
                        "workspaceId": workspace_id,
                        "sessionId": sid,
                        "reason": str(exc),
                        "aside": aside.name,
                    },
                )
        conv = Conversation(workspace_id, sid=sid, created_at=utc_now())
        logfile = LogFile(path)
        logfile.append([conv.header()])
        _fsync_dir(directory)
        return conv, logfile


def _fsync_dir(directory: Path) -> None:
    # A new file's name is durable only once its directory is synced.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

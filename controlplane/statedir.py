"""The state directory and the SQLite files in it: readable by the owner only.

Decision: an existing state directory that others may enter or list is
*tightened* (with a warning), not refused: every bit for others and the
group's read and write go; the group's search bit (0710) stays, because
that is how relayd, in the control plane's group, opens ``jwks.json`` and
``revoked.json``, the two files it knows the names of (and both are public
on purpose). A directory that belongs to another user is refused, with an
error that says so: the control plane must not write secrets into it.

SQLite creates the ``-wal`` and ``-shm`` files with the mode of the database
file, so creating the database 0600 before SQLite opens it is what keeps
all three private; files left more open by an older version are tightened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

import sqlalchemy as sa

log = logging.getLogger(__name__)

#: Mode bits a state directory must not have: all of others', the group's read and write.
OPEN_DIR_BITS = 0o067
#: Suffixes of the files SQLite keeps beside a database.
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


class StateDirError(OSError):
    """The state directory cannot be made private; the message says why."""


def secure_dir(path: Path) -> None:
    """Create ``path`` 0700, or take others' bits away; :class:`StateDirError` if it is not ours."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid != os.geteuid():
        raise StateDirError(
            f"state directory {path} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.geteuid()}); use a directory of your own"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & OPEN_DIR_BITS:
        tightened = mode & ~OPEN_DIR_BITS
        log.warning(
            "state directory was open to others; tightened",
            extra={"path": str(path), "mode": oct(mode), "now": oct(tightened)},
        )
        path.chmod(tightened)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = sa.engine.make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def private_sqlite_files(url: str) -> None:
    """Create the SQLite database 0600 if missing; tighten it and its side files to 0600."""
    path = sqlite_path(url)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: an existing database is never opened here. Closing a descriptor
    # drops every POSIX lock this process holds on the file, SQLite's too.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    for suffix in SQLITE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            side = Path(f"{path}{suffix}")
            if stat.S_IMODE(side.stat().st_mode) & 0o077:
                side.chmod(0o600)

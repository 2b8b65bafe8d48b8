"""A workspace's list of sessions as a pure state machine (no I/O).

Every workspace has the session ``main`` (created with it) and up to
``max_open`` sessions open at once, counting main; closed ones stay readable,
at most ``max_closed`` of them, the one closed longest ago going first. The
list is kept in main's log as a ``system`` line of vmagent's own
(:data:`SESSIONS_SUBTYPE`), written whenever it changes; the latest such line
is the list (none yet: main alone). The session ops (``session_create``,
``session_rename``, ``session_close``) check their args here and change the
list; :class:`SessionOpError` says what was wrong.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from wire.codec import dumps
from wire.protocol import MAIN_SESSION, ErrorCode, is_session_id

__all__ = ["MAIN_SESSION"]  # re-exported: vmagent's modules take it from here
#: Sessions open at once per workspace, main included (``--max-sessions``).
DEFAULT_MAX_SESSIONS: Final = 5
#: Closed sessions kept per workspace (``--max-closed-sessions``).
DEFAULT_MAX_CLOSED_SESSIONS: Final = 20
#: Longest session title.
MAX_TITLE: Final = 100
#: The ``system`` line that carries the list, in main's log.
SESSIONS_SUBTYPE: Final = "vmagent_sessions"

OP_CREATE: Final = "session_create"
OP_RENAME: Final = "session_rename"
OP_CLOSE: Final = "session_close"
#: The ops about the list of sessions.
LIST_OPS: Final = frozenset({OP_CREATE, OP_RENAME, OP_CLOSE})


def new_session_id() -> str:
    """A fresh id for a session the VM creates: ``s_<32 hex>``."""
    return "s_" + uuid.uuid4().hex


def utc_now() -> str:
    """The current time as ISO 8601 UTC (seconds), as ``createdAt`` says it."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")


class SessionOpError(Exception):
    """A session op refused, with the error code for its reply."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.define
class SessionEntry:
    """One session as the list names it."""

    session_id: str
    title: str = ""
    created_at: str = ""
    closed: bool = False
    #: When it was closed (ISO 8601 UTC): which closed one goes first past the limit.
    closed_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as the list line writes it."""
        body: dict[str, Any] = {
            "sessionId": self.session_id,
            "title": self.title,
            "createdAt": self.created_at,
            "closed": self.closed,
        }
        if self.closed_at is not None:
            body["closedAt"] = self.closed_at
        return body


def title_of(args: Mapping[str, Any], *, required: bool) -> str:
    """The ``title`` an op's args give ("" when optional and absent), or :class:`SessionOpError`."""
    title = args.get("title")
    if title is None and not required:
        return ""
    low = 1 if required else 0
    if not isinstance(title, str) or not low <= len(title) <= MAX_TITLE:
        size = f"1 to {MAX_TITLE}" if required else f"at most {MAX_TITLE}"
        raise SessionOpError(ErrorCode.BAD_REQUEST, f"title must be a string of {size} characters")
    return title


class SessionList:
    """The sessions of one workspace, oldest first; main is always the first."""

    def __init__(
        self,
        entries: Sequence[SessionEntry] = (),
        *,
        max_open: int = DEFAULT_MAX_SESSIONS,
        max_closed: int = DEFAULT_MAX_CLOSED_SESSIONS,
        main_created_at: str = "",
    ) -> None:
        self.max_open = max_open
        self.max_closed = max_closed
        self.entries: list[SessionEntry] = [attrs.evolve(e) for e in entries]
        main = next((e for e in self.entries if e.session_id == MAIN_SESSION), None)
        self.entries = [e for e in self.entries if e is not main]
        self.entries.insert(0, main or SessionEntry(MAIN_SESSION, created_at=main_created_at))
        self.entries[0].closed = False  # main is never closed
        self.entries[0].closed_at = None

    @classmethod
    def from_line(cls, data: Mapping[str, Any] | None, **limits: Any) -> SessionList:
        """The list a ``vmagent_sessions`` line records (None: main alone).

        Entries that are not well formed are left out: the line is our own,
        so that only happens to a log edited by hand.
        """
        entries: list[SessionEntry] = []
        seen: set[str] = set()
        raw = data.get("sessions") if data is not None else None
        for item in raw if isinstance(raw, list) else []:
            if not isinstance(item, dict):
                continue
            session_id, title = item.get("sessionId"), item.get("title", "")
            created, closed_at = item.get("createdAt", ""), item.get("closedAt")
            if not is_session_id(session_id) or session_id in seen:
                continue
            assert isinstance(session_id, str)
            seen.add(session_id)
            entries.append(
                SessionEntry(
                    session_id,
                    title if isinstance(title, str) else "",
                    created if isinstance(created, str) else "",
                    item.get("closed") is True,
                    closed_at if isinstance(closed_at, str) else None,
                )
            )
        return cls(entries, **limits)

    def line(self) -> str:
        """The ``system`` line that records the whole list and the open limit."""
        return dumps(
            {
                "type": "system",
                "subtype": SESSIONS_SUBTYPE,
                "sessions": [e.to_json() for e in self.entries],
                # The web app's `+` stops at this limit rather than guessing it.
                "maxSessions": self.max_open,
            }
        )

    # -- looking up -----------------------------------------------------------

    def get(self, session_id: str) -> SessionEntry | None:
        """The entry of ``session_id``, if the list has it."""
        return next((e for e in self.entries if e.session_id == session_id), None)

    def open_ids(self) -> list[str]:
        """The open sessions, oldest first (main first)."""
        return [e.session_id for e in self.entries if not e.closed]

    def closed_ids(self) -> list[str]:
        """The closed sessions kept, oldest first."""
        return [e.session_id for e in self.entries if e.closed]

    def _known(self, session_id: str) -> SessionEntry:
        entry = self.get(session_id)
        if entry is None:
            raise SessionOpError(ErrorCode.NOT_FOUND, "no such session")
        return entry

    # -- the ops ---------------------------------------------------------------

    def create(self, title: str, *, session_id: str, now: str) -> SessionEntry:
        """Add an open session, or :class:`SessionOpError` ``rate_limited`` at the limit."""
        if len(self.open_ids()) >= self.max_open:
            raise SessionOpError(ErrorCode.RATE_LIMITED, f"at most {self.max_open} open sessions")
        if self.get(session_id) is not None:
            raise SessionOpError(ErrorCode.BAD_REQUEST, "that session exists already")
        entry = SessionEntry(session_id, title, now)
        self.entries.append(entry)
        return entry

    def rename(self, session_id: str, title: str) -> bool:
        """Give a session a new title; False when it had that title already."""
        entry = self._known(session_id)
        if entry.title == title:
            return False
        entry.title = title
        return True

    def close(self, session_id: str, *, now: str) -> tuple[bool, list[str]]:
        """Close a session: ``(changed, deleted)``, the closed ones dropped past the limit.

        main cannot be closed (``bad_request``); an already closed one is no change.
        """
        entry = self._known(session_id)
        if session_id == MAIN_SESSION:
            raise SessionOpError(ErrorCode.BAD_REQUEST, "the first session cannot be closed")
        if entry.closed:
            return False, []
        entry.closed = True
        entry.closed_at = now
        # The one closed longest ago goes first (ties: the list's order); the
        # one closed now is the newest, whatever its clock says.
        earlier = sorted(
            (e for e in self.entries if e.closed and e is not entry),
            key=lambda e: e.closed_at or "",
        )
        closed = [*earlier, entry]
        deleted = [e.session_id for e in closed[: max(0, len(closed) - self.max_closed)]]
        self.entries = [e for e in self.entries if e.session_id not in deleted]
        return True, deleted

"""One workspace on this VM: its sessions, and the list of them kept in main's log.

The workspace's sessions are :class:`~vmagent.session.WorkspaceSession` s, each
a task in the workspace's nursery with its own log, engine and queue, all in
the one working tree. Closed sessions keep only their
:class:`~vmagent.conversation.Conversation` (read back from the log, no file
open) so that their transcript can still be subscribed to. The list itself
is :class:`~vmagent.session_list.SessionList`: every change is logged in main
(fsync'd) before it takes effect, so a restarted vmagent finds the same
sessions, open and closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import trio

from vmagent.conversation import Conversation
from vmagent.session import CLOSED_DETAIL, Post, WorkspaceSession, close_log, offer
from vmagent.session_list import (
    DEFAULT_MAX_CLOSED_SESSIONS,
    DEFAULT_MAX_SESSIONS,
    MAIN_SESSION,
    OP_CLOSE,
    OP_CREATE,
    OP_RENAME,
    SessionList,
    SessionOpError,
    new_session_id,
    title_of,
    utc_now,
)
from vmagent.store import LogFile, Store
from wire.messages import error_frame
from wire.protocol import ErrorCode, Status

log = logging.getLogger("vmagent.workspace")

#: Makes a session from its log (the agent's engine, settings and ``post``).
SessionFactory = Callable[[Conversation, LogFile, trio.Event], WorkspaceSession]


@attrs.frozen
class SessionLimits:
    """How many sessions a workspace may have."""

    #: Open at once, main included (``--max-sessions``).
    max_open: int = DEFAULT_MAX_SESSIONS
    #: Closed ones kept (``--max-closed-sessions``); the one closed longest ago goes first.
    max_closed: int = DEFAULT_MAX_CLOSED_SESSIONS


class Workspace:
    """The sessions of one workspace; :meth:`run` lives in the agent's nursery."""

    def __init__(
        self,
        conv: Conversation,
        logfile: LogFile,
        *,
        store: Store,
        make_session: SessionFactory,
        post: Post,
        limits: SessionLimits | None = None,
        allow_bypass: bool = True,
        snapshot_attachment_chars: int | None = None,
    ) -> None:
        limits = limits or SessionLimits()
        #: Attachment data a snapshot carries, newest first (None: all of it).
        self._snapshot_attachment_chars = snapshot_attachment_chars
        self.workspace_id = conv.workspace_id
        self.store = store
        self._make_session = make_session
        self._post = post
        self._allow_bypass = allow_bypass
        self.workdir_ready = trio.Event()
        self.sessions = SessionList.from_line(
            conv.sessions_data,
            max_open=limits.max_open,
            max_closed=limits.max_closed,
            # A log from before sessions has no createdAt: the first list line sets one.
            main_created_at=conv.created_at or utc_now(),
        )
        self.main = make_session(conv, logfile, self.workdir_ready)
        #: Sessions that run (or are stopping), by sessionId; main among them.
        self.open: dict[str, WorkspaceSession] = {MAIN_SESSION: self.main}
        #: Closed sessions' conversations, readable.
        self.closed: dict[str, Conversation] = {}
        for entry in self.sessions.entries[1:]:
            other, other_log = store.open(self.workspace_id, entry.session_id)
            if entry.closed:
                if other.status_detail != CLOSED_DETAIL or other.status != Status.STOPPED:
                    close_log(other, other_log, post)  # closed in the list, not yet in its log
                else:
                    other_log.close()
                self.closed[entry.session_id] = other
            else:
                self.open[entry.session_id] = make_session(other, other_log, self.workdir_ready)
        self._closing: set[str] = set()
        self._nursery: trio.Nursery | None = None
        # The list line says the open limit; one from another limit (or from
        # before the field, unless the limit is the default a reader assumes)
        # is written again, so that the web app's `+` stops where we do.
        said = (conv.sessions_data or {}).get("maxSessions", DEFAULT_MAX_SESSIONS)
        if said != self.sessions.max_open:
            self._log_list()
        self.released = False
        self.stopping = False
        self.finished = trio.Event()

    @property
    def issue(self) -> dict[str, Any] | None:
        """The issue this workspace works on."""
        return self.main.issue

    def conversations(self) -> Iterator[Conversation]:
        """Every kept session's conversation, main first, as the list orders them."""
        for session_id in [e.session_id for e in self.sessions.entries]:
            if session_id in self.open:
                yield self.open[session_id].conv
            elif session_id in self.closed:
                yield self.closed[session_id]

    # -- life ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run every open session until the workspace stops."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for session in list(self.open.values()):
                    nursery.start_soon(self._run_session, session)
        finally:
            self._nursery = None
            self.finished.set()

    def stop(self, *, released: bool) -> None:
        """Stop every session (``workspace_released`` when ``released``)."""
        self.released = self.released or released
        self.stopping = True
        for session in self.open.values():
            session.stop()

    async def _run_session(self, session: WorkspaceSession) -> None:
        try:
            await session.run()
        except Exception as exc:
            # A bug in one session must not take the others down with it.
            log.exception(
                "session failed",
                extra={"workspaceId": self.workspace_id, "sessionId": session.sid},
            )
            session.commit(session.conv.set_status(Status.ERROR, f"internal error: {exc}"[:300]))
        finally:
            closing = session.sid in self._closing
            session.close(released=self.released and not closing, closed=closing)
            if closing:
                self._closing.discard(session.sid)
                del self.open[session.sid]
                if self.sessions.get(session.sid) is not None:
                    self.closed[session.sid] = session.conv
                else:  # deleted past the limit while it was stopping
                    self.store.delete(self.workspace_id, session.sid)

    # -- routing --------------------------------------------------------------------

    def _error(self, code: ErrorCode, message: str, session_id: str, ref: str | None) -> None:
        self._post(
            error_frame(
                code, message, workspace_id=self.workspace_id, ref=ref, session_id=session_id
            )
        )

    def knows(self, session_id: str) -> bool:
        """Whether the workspace keeps that session (open or closed)."""
        return session_id in self.open or session_id in self.closed

    def conversation(self, session_id: str, ref: str | None) -> Conversation | None:
        """The conversation of a kept session; None (``not_found`` sent) for any other."""
        if session_id in self.open:
            return self.open[session_id].conv
        if session_id in self.closed:
            return self.closed[session_id]
        self._error(ErrorCode.NOT_FOUND, "no such session", session_id, ref)
        return None

    def running(self, session_id: str, ref: str | None) -> WorkspaceSession | None:
        """The open session, or None with the error sent (closed: ``bad_request``)."""
        if self.conversation(session_id, ref) is None:
            return None
        session = self.open.get(session_id)
        if session is None or session_id in self._closing:
            self._error(ErrorCode.BAD_REQUEST, "session is closed", session_id, ref)
            return None
        return session

    def is_closed(self, session_id: str) -> bool:
        """Whether the session is closed (or closing)."""
        return session_id in self.closed or session_id in self._closing

    def snapshot(self, session_id: str, request_id: str) -> None:
        """Answer a ``snapshot_request`` for one session."""
        conv = self.conversation(session_id, request_id)
        if conv is not None:
            self._post(conv.snapshot(request_id, self._snapshot_attachment_chars))

    def offered(self, session_id: str) -> dict[str, Any]:
        """The ``session_models`` result of a kept session (a closed one offers no models)."""
        session = self.open.get(session_id)
        if session is not None:
            return session.offered()
        return offer([], self.closed[session_id].settings, allow_bypass=self._allow_bypass)

    # -- the session ops --------------------------------------------------------------

    def session_op(self, op: str, session_id: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run ``session_create``/``session_rename``/``session_close``; the reply's result.

        Raises :class:`SessionOpError` with what was wrong.
        """
        if self.stopping or self.finished.is_set():
            raise SessionOpError(ErrorCode.NOT_FOUND, "this VM does not hold that workspace")
        if op == OP_CREATE:
            return self._create(title_of(args, required=False))
        if op == OP_RENAME:
            title = title_of(args, required=True)
            if self.sessions.rename(session_id, title):
                self._log_list()
            return {"sessionId": session_id, "title": title}
        assert op == OP_CLOSE
        self._close(session_id)
        return {"sessionId": session_id}

    def _log_list(self) -> None:
        self.main.commit(self.main.conv.claude_line(self.sessions.line(), sync=True))

    def _create(self, title: str) -> dict[str, Any]:
        entry = self.sessions.create(title, session_id=new_session_id(), now=utc_now())
        try:
            conv, logfile = self.store.open(self.workspace_id, entry.session_id)
        except OSError as exc:
            self.sessions.entries.remove(entry)
            log.warning(
                "no log for a new session",
                extra={"workspaceId": self.workspace_id, "error": str(exc)},
            )
            raise SessionOpError(
                ErrorCode.BAD_REQUEST, "the session could not be created"
            ) from None
        # The log exists before the list names it: a listed session always has one.
        self._log_list()
        session = self._make_session(conv, logfile, self.workdir_ready)
        self.open[entry.session_id] = session
        if self._nursery is not None:  # else run() starts it with the others
            self._nursery.start_soon(self._run_session, session)
        return {"sessionId": entry.session_id, "title": entry.title}

    def _close(self, session_id: str) -> None:
        changed, deleted = self.sessions.close(session_id, now=utc_now())
        if not changed:
            return
        # Listed as closed first: a crash from here on finds it closed all the same.
        self._log_list()
        session = self.open.get(session_id)
        if session is not None and session.finished.is_set():
            # Its run ended on its own (a failure): nothing is left to stop or to record.
            del self.open[session_id]
            self.closed[session_id] = session.conv
        elif session is not None:
            self._closing.add(session_id)
            session.stop()
        for old in deleted:
            if old in self.closed:
                del self.closed[old]
                self.store.delete(self.workspace_id, old)
            # One still stopping is deleted when it has stopped (_run_session).

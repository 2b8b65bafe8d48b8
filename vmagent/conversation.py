"""One workspace's conversation as a pure state machine (no I/O).

The conversation is a log of sequenced VM frames (``user_message``,
``claude_message``, ``status``, ``user_question``, ``permission_request``,
``request_resolved``), each numbered by ``seq`` within an ``epoch``. Every
method that changes the conversation returns the :class:`Out` records the I/O
shell must write to the log (fsync'd when ``sync``) and then send, in order.
Methods never raise for bad input from a peer: they return an ``error`` frame
that is sent but not logged.

The log on disk is the very frames that went out, one per line, plus a few
meta records whose ``type`` starts with ``_`` (the log header, the Claude
session id, the assigned issue). :meth:`Conversation.restore` rebuilds the
whole state from those lines, so a restarted vmagent carries on where it was.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from vmagent.attachments import attachment_chars, restore_attachments, strip_for_snapshot
from vmagent.engines.base import SessionSettings
from vmagent.session_list import MAIN_SESSION, SESSIONS_SUBTYPE
from wire.attachments import Attachments
from wire.envelope import vm_frame
from wire.messages import (
    PermissionResponse,
    QuestionResponse,
    UserMessage,
    dumps,
    error_frame,
)
from wire.protocol import (
    SEQUENCED_VM_TYPES,
    ErrorCode,
    Resolution,
    Status,
    VmType,
    written_session,
)

LOG_FORMAT: Final = "ffcloud-vm-log"
LOG_VERSION: Final = 1

# Meta record types; a leading underscore keeps them apart from protocol types.
META_HEADER: Final = "_log"
META_SESSION: Final = "_session"
META_ASSIGNED: Final = "_assigned"
META_RELEASED: Final = "_released"
META_TURN: Final = "_turn"

QUESTION: Final = "question"
PERMISSION: Final = "permission"


class CorruptLog(Exception):
    """A log that cannot be read back; it is set aside and a new epoch starts."""


@attrs.frozen
class Out:
    """One frame to act on: append to the log (``log``), fsync (``sync``), then send."""

    frame: str
    log: bool = True
    sync: bool = False


@attrs.define
class _Entry:
    """A logged sequenced frame and what compaction needs to know about it."""

    seq: int
    frame: str
    # For claude_message: "stream" (a stream_event), "assistant", or "" (other).
    role: str = ""
    # The Anthropic message id the line belongs to, when known.
    message_id: str | None = None
    # For user_message: characters of attachment data (base64, text) it holds.
    attachment_chars: int = 0


@attrs.define
class Pending:
    """An open question or permission request."""

    request_id: str
    kind: str  # QUESTION or PERMISSION
    frame: str


@attrs.define
class _Stream:
    """Which message the stream_events of one scope (parent_tool_use_id) belong to."""

    message_id: str | None = None


#: The ``system`` line vmagent logs when a user changes the session's model or mode.
SETTINGS_SUBTYPE: Final = "vmagent_session_settings"


def settings_of(data: Mapping[str, Any]) -> SessionSettings:
    """The settings a ``vmagent_session_settings`` line records."""
    model, mode = data.get("model"), data.get("permissionMode")
    return SessionSettings(
        model if isinstance(model, str) else None, mode if isinstance(mode, str) else None
    )


def settings_line(settings: SessionSettings, user_id: str | None) -> str:
    """The ``system`` line that records a change of settings (every viewer sees it)."""
    body: dict[str, Any] = {"type": "system", "subtype": SETTINGS_SUBTYPE}
    if settings.model is not None:
        body["model"] = settings.model
    if settings.permission_mode is not None:
        body["permissionMode"] = settings.permission_mode
    if user_id is not None:
        body["userId"] = user_id
    return dumps(body)


def new_epoch() -> str:
    """A fresh epoch name."""
    return uuid.uuid4().hex


def new_request_id(kind: str) -> str:
    """A fresh requestId for a question (``q_``) or permission (``p_``)."""
    return ("q_" if kind == QUESTION else "p_") + uuid.uuid4().hex


class Conversation:
    """The state of one session's log: seq, epoch, messages, open requests.

    ``sid`` is the protocol's ``sessionId`` of the log (``main``, or
    ``s_<32 hex>``); ``session_id`` is Claude Code's own session id.
    """

    def __init__(
        self,
        workspace_id: str,
        epoch: str | None = None,
        *,
        sid: str = MAIN_SESSION,
        created_at: str | None = None,
    ) -> None:
        self.workspace_id = workspace_id
        self.sid = sid
        self.epoch = epoch or new_epoch()
        #: When the log was made (ISO 8601 UTC; None for a log from before it was kept).
        self.created_at = created_at
        #: The latest ``vmagent_sessions`` line's data (main's log only), None before one.
        self.sessions_data: dict[str, Any] | None = None
        self.seq = 0
        self.status: str = Status.STARTING
        self.status_detail: str | None = None
        self.session_id: str | None = None
        self.settings = SessionSettings()
        self.issue: dict[str, Any] | None = None
        self.released = False
        self.pending: dict[str, Pending] = {}
        self._entries: list[_Entry] = []
        self._client_ids: dict[str, int] = {}
        # Accepted user messages not yet handed to the engine, in order.
        self._unstarted: dict[str, tuple[str, Attachments]] = {}
        self._resolved: set[str] = set()
        # Messages whose complete assistant line is logged, and those known finished.
        self._assistant_seen: set[str] = set()
        self._finished: set[str] = set()
        self._streams: dict[str | None, _Stream] = {}
        self._status_logged = False

    # -- the log header ---------------------------------------------------------

    def header(self) -> Out:
        """The first line of a new log file."""
        body: dict[str, Any] = {
            "type": META_HEADER,
            "format": LOG_FORMAT,
            "version": LOG_VERSION,
            "workspaceId": self.workspace_id,
        }
        if (written := written_session(self.sid)) is not None:
            body["sessionId"] = written
        body["epoch"] = self.epoch
        if self.created_at is not None:
            body["createdAt"] = self.created_at
        return Out(dumps(body), log=True, sync=True)

    def hello_entry(self) -> dict[str, Any]:
        """This session's item in ``hello`` (``sessionId`` left out for main)."""
        entry: dict[str, Any] = {"workspaceId": self.workspace_id}
        if (written := written_session(self.sid)) is not None:
            entry["sessionId"] = written
        entry |= {
            "epoch": self.epoch,
            "seq": self.seq,
            # Beyond the contract's three fields: relayd tells subscribers, who
            # heard ``offline``, that the VM is back and where the session is.
            "status": self.status,
        }
        if self.status_detail is not None:
            entry["statusDetail"] = self.status_detail
        return entry

    # -- meta records (logged, never sent) ---------------------------------------

    def set_session_id(self, session_id: str) -> Out | None:
        """Remember the Claude session id (to resume after a restart)."""
        if session_id == self.session_id:
            return None
        self.session_id = session_id
        return Out(dumps({"type": META_SESSION, "sessionId": session_id}), log=True, sync=True)

    def assign(self, issue: Mapping[str, Any]) -> Out | None:
        """Record the issue this workspace works on; None when nothing changed."""
        if dict(issue) == self.issue and not self.released:
            return None
        self.issue = dict(issue)
        self.released = False
        return Out(dumps({"type": META_ASSIGNED, "issue": self.issue}), log=True, sync=True)

    def start_turn(self, client_message_id: str) -> Out:
        """Record that a user message was handed to the engine (not to be fed again)."""
        self._unstarted.pop(client_message_id, None)
        body = {"type": META_TURN, "clientMessageId": client_message_id}
        return Out(dumps(body), log=True, sync=True)

    def unstarted(self) -> list[tuple[str, str, Attachments]]:
        """Accepted user messages never handed to the engine:
        ``(clientMessageId, text, attachments)``.

        After a restart they are fed to the engine in order, so nothing
        accepted is lost; the one whose turn was cut short is not run again.
        """
        return [(cid, text, files) for cid, (text, files) in self._unstarted.items()]

    def release(self) -> Out:
        """Record that the VM no longer owns the workspace."""
        self.released = True
        return Out(dumps({"type": META_RELEASED}), log=True, sync=True)

    # -- sequenced messages ------------------------------------------------------

    def _next(
        self,
        kind: str,
        *,
        request_id: str | None = None,
        fields: dict[str, Any] | None = None,
        raw_fields: dict[str, str] | None = None,
    ) -> str:
        self.seq += 1
        return vm_frame(
            kind,
            self.workspace_id,
            session_id=self.sid,
            seq=self.seq,
            epoch=self.epoch,
            request_id=request_id,
            fields=fields,
            raw_fields=raw_fields,
        )

    def _error(self, code: ErrorCode, message: str, ref: str | None) -> list[Out]:
        frame = error_frame(
            code, message, workspace_id=self.workspace_id, ref=ref, session_id=self.sid
        )
        return [Out(frame, log=False)]

    def set_status(self, status: str, detail: str | None = None) -> list[Out]:
        """Report a status change; nothing when neither status nor detail changed."""
        if self._status_logged and (status, detail) == (self.status, self.status_detail):
            return []
        fields: dict[str, Any] = {"status": status}
        if detail is not None:
            fields["detail"] = detail
        frame = self._next(VmType.STATUS, fields=fields)
        self._apply(frame, json.loads(frame))
        return [Out(frame)]

    def accept_user_message(
        self, message: UserMessage, echoed: list[dict[str, Any]] | None = None
    ) -> tuple[bool, list[Out]]:
        """Accept a user message once per clientMessageId.

        Returns ``(accepted, outs)``: a new message is logged (fsync'd) and
        echoed with its seq; a repeated clientMessageId is not a second
        message and gets an ``error`` that names the seq it was accepted as.
        ``echoed``: the message's attachments as the echo shows them, already
        checked (:func:`vmagent.attachments.echo_attachments`).
        """
        earlier = self._client_ids.get(message.client_message_id)
        if earlier is not None:
            return False, self._error(
                ErrorCode.BAD_REQUEST,
                f"clientMessageId already accepted as seq {earlier}",
                message.client_message_id,
            )
        if self.released:
            return False, self._error(
                ErrorCode.NOT_FOUND, "workspace is released", message.client_message_id
            )
        fields: dict[str, Any] = {"clientMessageId": message.client_message_id}
        if message.user_id is not None:
            fields["userId"] = message.user_id
        fields["text"] = message.text
        if echoed:
            fields["attachments"] = echoed
        frame = self._next(VmType.USER_MESSAGE, fields=fields)
        self._apply(frame, json.loads(frame))
        return True, [Out(frame, sync=True)]

    def claude_line(self, line: str, *, sync: bool = False) -> list[Out]:
        """One stream-json line, spliced verbatim into a ``claude_message``.

        The line must be one JSON object (the caller checks); it is parsed here
        only to learn what compaction and resume need. ``sync``: fsync it
        (vmagent's own records, such as the list of sessions).
        """
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("a stream-json line must be a JSON object")
        frame = self._next(VmType.CLAUDE_MESSAGE, raw_fields={"data": line})
        self._apply_claude(self.seq, frame, data)
        outs = [Out(frame, sync=sync)]
        session_id = data.get("session_id")
        if data.get("type") == "system" and isinstance(session_id, str) and session_id:
            meta = self.set_session_id(session_id)
            if meta is not None:
                outs.insert(0, meta)
        return outs

    def open_request(self, kind: str, fields: dict[str, Any]) -> tuple[str, list[Out]]:
        """Open a question (``user_question``) or permission (``permission_request``).

        Also reports ``waiting_for_input``. Returns the new requestId.
        """
        request_id = new_request_id(kind)
        msg_type = VmType.USER_QUESTION if kind == QUESTION else VmType.PERMISSION_REQUEST
        frame = self._next(msg_type, request_id=request_id, fields=fields)
        self._apply(frame, json.loads(frame))
        return request_id, [Out(frame, sync=True), *self.set_status(Status.WAITING_FOR_INPUT)]

    def answer_question(self, response: QuestionResponse) -> tuple[Pending | None, list[Out]]:
        """The first answer to an open question wins; others get an error."""
        return self._answer(response.request_id, QUESTION, Resolution.ANSWERED, response.user_id)

    def answer_permission(self, response: PermissionResponse) -> tuple[Pending | None, list[Out]]:
        """The first decision on an open permission wins; others get an error."""
        resolution = Resolution.ALLOWED if response.allow else Resolution.DENIED
        return self._answer(response.request_id, PERMISSION, resolution, response.user_id)

    def _answer(
        self, request_id: str, kind: str, resolution: str, user_id: str | None
    ) -> tuple[Pending | None, list[Out]]:
        pending = self.pending.get(request_id)
        if pending is None:
            if request_id in self._resolved:
                return None, self._error(
                    ErrorCode.ALREADY_RESOLVED, "request is already resolved", request_id
                )
            return None, self._error(ErrorCode.NOT_FOUND, "no such request", request_id)
        if pending.kind != kind:
            return None, self._error(
                ErrorCode.BAD_REQUEST, f"request {request_id} is not a {kind} request", request_id
            )
        return pending, self.resolve(request_id, resolution, user_id)

    def resolve(self, request_id: str, resolution: str, user_id: str | None = None) -> list[Out]:
        """Close an open request with ``request_resolved`` (fsync'd); no-op when not open."""
        if request_id not in self.pending:
            return []
        fields: dict[str, Any] = {"resolution": resolution}
        if user_id is not None:
            fields["userId"] = user_id
        frame = self._next(VmType.REQUEST_RESOLVED, request_id=request_id, fields=fields)
        self._apply(frame, json.loads(frame))
        return [Out(frame, sync=True)]

    def cancel_pending(self) -> list[Out]:
        """Cancel every open request (the turn that asked is gone)."""
        outs: list[Out] = []
        for request_id in list(self.pending):
            outs.extend(self.resolve(request_id, Resolution.CANCELLED))
        return outs

    # -- applying frames (live and on restore) -----------------------------------

    def _apply(self, frame: str, body: dict[str, Any]) -> None:
        kind = body.get("type")
        seq = body["seq"]
        if kind == VmType.CLAUDE_MESSAGE:
            data = body.get("data")
            self._apply_claude(seq, frame, data if isinstance(data, dict) else {})
            return
        entry = _Entry(seq, frame)
        self._entries.append(entry)
        if kind == VmType.USER_MESSAGE:
            client_id = str(body.get("clientMessageId"))
            self._client_ids[client_id] = seq
            text = body.get("text")
            self._unstarted[client_id] = (
                text if isinstance(text, str) else "",
                restore_attachments(body.get("attachments")),
            )
            entry.attachment_chars = attachment_chars(body)
        elif kind == VmType.STATUS:
            self._status_logged = True
            self.status = str(body.get("status"))
            detail = body.get("detail")
            self.status_detail = detail if isinstance(detail, str) else None
        elif kind == VmType.USER_QUESTION:
            request_id = str(body.get("requestId"))
            self.pending[request_id] = Pending(request_id, QUESTION, frame)
        elif kind == VmType.PERMISSION_REQUEST:
            request_id = str(body.get("requestId"))
            self.pending[request_id] = Pending(request_id, PERMISSION, frame)
        elif kind == VmType.REQUEST_RESOLVED:
            request_id = str(body.get("requestId"))
            self.pending.pop(request_id, None)
            self._resolved.add(request_id)

    def _apply_claude(self, seq: int, frame: str, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "system" and data.get("subtype") == SESSIONS_SUBTYPE:
            self.sessions_data = data
        if kind == "system" and data.get("subtype") in (SETTINGS_SUBTYPE, "init"):
            # The latest wins: Claude Code leaves plan mode by itself once a plan
            # is approved, and its next init line says so.
            new = settings_of(data)
            self.settings = SessionSettings(
                new.model or self.settings.model,
                new.permission_mode or self.settings.permission_mode,
            )
        scope = data.get("parent_tool_use_id")
        scope_key = scope if isinstance(scope, str) else None
        stream = self._streams.setdefault(scope_key, _Stream())
        entry = _Entry(seq, frame)
        if kind == "stream_event":
            event = data.get("event")
            event_type = event.get("type") if isinstance(event, dict) else None
            if event_type == "message_start" and isinstance(event, dict):
                # A new message in this scope: the previous one is finished.
                if stream.message_id is not None:
                    self._finished.add(stream.message_id)
                message = event.get("message")
                msg_id = message.get("id") if isinstance(message, dict) else None
                stream.message_id = msg_id if isinstance(msg_id, str) else None
            entry.role = "stream"
            # Claude Code names the message on each event; older lines do not.
            api_id = data.get("api_message_id")
            entry.message_id = api_id if isinstance(api_id, str) else stream.message_id
            if event_type == "message_stop" and stream.message_id is not None:
                self._finished.add(stream.message_id)
        elif kind == "assistant":
            message = data.get("message")
            msg_id = message.get("id") if isinstance(message, dict) else None
            if isinstance(msg_id, str):
                entry.role = "assistant"
                entry.message_id = msg_id
                self._assistant_seen.add(msg_id)
        elif kind == "result":
            # The turn is over: whatever was streaming is finished.
            for other in self._streams.values():
                if other.message_id is not None:
                    self._finished.add(other.message_id)
                other.message_id = None
        self._entries.append(entry)

    # -- snapshots ---------------------------------------------------------------

    def _compacted(self, attachment_budget: int | None) -> list[str]:
        drop = self._assistant_seen & self._finished
        frames = [
            e
            for e in self._entries
            if not (e.role == "stream" and e.message_id is not None and e.message_id in drop)
        ]
        if attachment_budget is None:
            return [e.frame for e in frames]
        # The newest attachments stay whole; older ones past the budget lose their data.
        kept: list[str] = []
        for entry in reversed(frames):
            frame = entry.frame
            if entry.attachment_chars:
                if entry.attachment_chars <= attachment_budget:
                    attachment_budget -= entry.attachment_chars
                else:
                    attachment_budget = 0
                    frame = strip_for_snapshot(frame)
            kept.append(frame)
        kept.reverse()
        return kept

    def snapshot(self, request_id: str, attachment_budget: int | None = None) -> str:
        """A ``messages_snapshot`` frame answering ``snapshot_request``.

        ``messages`` are the logged frames as they went out, compacted: the
        ``stream_event`` lines of a message are left out once that message is
        finished (``message_stop``, a later ``message_start`` in the same scope,
        or the turn's ``result``) and its complete ``assistant`` line is
        logged. A message still streaming keeps its deltas so far.

        ``attachment_budget``: characters of attachment data (base64, text)
        the snapshot keeps, newest first; older attachments are sent without
        their data (``omitted``). None: all of them.
        """
        fields: dict[str, Any] = {"status": self.status}
        if self.status_detail is not None:
            fields["statusDetail"] = self.status_detail
        messages = "[" + ",".join(self._compacted(attachment_budget)) + "]"
        pending = "[" + ",".join(p.frame for p in self.pending.values()) + "]"
        return vm_frame(
            VmType.MESSAGES_SNAPSHOT,
            self.workspace_id,
            session_id=self.sid,
            seq=self.seq,
            epoch=self.epoch,
            request_id=request_id,
            fields=fields,
            raw_fields={"messages": messages, "pending": pending},
        )

    # -- restore -----------------------------------------------------------------

    @classmethod
    def restore(
        cls, workspace_id: str, lines: Iterable[str], sid: str = MAIN_SESSION
    ) -> Conversation:
        """Rebuild a conversation from its log lines, or raise :class:`CorruptLog`.

        Every line must be a JSON object and end with a newline; the first is
        the header (of this workspace and session); sequenced frames must
        count up by exactly one.
        """
        conv: Conversation | None = None
        for number, raw in enumerate(lines, start=1):
            if not raw.endswith("\n"):
                raise CorruptLog(f"line {number} is cut short")
            line = raw.rstrip("\n")
            try:
                body = json.loads(line)
            except ValueError:
                raise CorruptLog(f"line {number} is not JSON") from None
            if not isinstance(body, dict):
                raise CorruptLog(f"line {number} is not a JSON object")
            kind = body.get("type")
            if conv is None:
                if (
                    kind != META_HEADER
                    or body.get("format") != LOG_FORMAT
                    or body.get("version") != LOG_VERSION
                    or body.get("workspaceId") != workspace_id
                    or body.get("sessionId", MAIN_SESSION) != sid
                    or not isinstance(body.get("epoch"), str)
                ):
                    raise CorruptLog("the log header is missing or not ours")
                created = body.get("createdAt")
                conv = cls(
                    workspace_id,
                    body["epoch"],
                    sid=sid,
                    created_at=created if isinstance(created, str) else None,
                )
                continue
            conv._restore_line(number, line, body)
        if conv is None:
            raise CorruptLog("the log is empty")
        return conv

    def _restore_line(self, number: int, line: str, body: dict[str, Any]) -> None:
        kind = body.get("type")
        if kind == META_SESSION:
            session_id = body.get("sessionId")
            if not isinstance(session_id, str):
                raise CorruptLog(f"line {number}: bad session record")
            self.session_id = session_id
            return
        if kind == META_ASSIGNED:
            issue = body.get("issue")
            if not isinstance(issue, dict):
                raise CorruptLog(f"line {number}: bad assignment record")
            self.issue = issue
            self.released = False
            return
        if kind == META_RELEASED:
            self.released = True
            return
        if kind == META_TURN:
            self._unstarted.pop(str(body.get("clientMessageId")), None)
            return
        seq = body.get("seq")
        if (
            not isinstance(seq, int)
            or isinstance(seq, bool)
            or seq != self.seq + 1
            or body.get("epoch") != self.epoch
            or body.get("workspaceId") != self.workspace_id
            or body.get("sessionId", MAIN_SESSION) != self.sid
        ):
            raise CorruptLog(f"line {number}: expected seq {self.seq + 1} of epoch {self.epoch}")
        if kind not in SEQUENCED_VM_TYPES:
            raise CorruptLog(f"line {number}: unexpected type {str(kind)[:40]!r}")
        self.seq = seq
        self._apply(line, body)

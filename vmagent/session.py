"""One session of a workspace on this VM: its log, its engine, in the workspace's tree.

The thin I/O shell around :class:`~vmagent.conversation.Conversation`: every
change goes through :meth:`WorkspaceSession.commit`, which writes the log (and
fsyncs when asked) and then hands the frames to ``post`` (the connection to
relayd, or nowhere while disconnected: the log and ``hello`` cover the gap).
commit is synchronous, so log order and send order are the same by
construction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from vmagent.attachments import (
    AttachmentError,
    AttachmentLimits,
    check_attachments,
    echo_attachments,
)
from vmagent.conversation import PERMISSION, QUESTION, Conversation, Out, settings_line
from vmagent.engines.base import (
    BYPASS_MODE,
    PERMISSION_MODES,
    Decision,
    Engine,
    EngineError,
    EngineSession,
    SessionSettings,
)
from vmagent.session_list import MAIN_SESSION, SESSIONS_SUBTYPE
from vmagent.store import LogFile
from vmagent.workdir import WorkdirError, WorkdirPlan, prepare_workdir
from wire.attachments import Attachments
from wire.messages import (
    Answer,
    Interrupt,
    PermissionResponse,
    QuestionResponse,
    UserMessage,
    error_frame,
)
from wire.protocol import ErrorCode, Status

log = logging.getLogger("vmagent.session")

#: User messages accepted but not yet handed to the engine, per session.
DEFAULT_MAX_QUEUED_MESSAGES: Final = 64
#: Longest model name a ``session_settings`` op accepts.
MAX_MODEL_NAME: Final = 100

Post = Callable[[str], None]
#: The ``detail`` of a closed session's ``stopped`` status.
CLOSED_DETAIL: Final = "closed"


def commit_to(logfile: LogFile, post: Post, outs: Iterable[Out | None]) -> None:
    """Write ``outs`` to the log (fsync when asked), then send those meant for peers."""
    real = [o for o in outs if o is not None]
    if not real:
        return
    logfile.append(real)
    for out in real:
        if not out.frame.startswith('{"type":"_'):
            post(out.frame)


def close_log(conv: Conversation, logfile: LogFile, post: Post) -> None:
    """Record that a session is closed (``stopped``, detail ``closed``) and close its log."""
    commit_to(logfile, post, conv.cancel_pending())
    commit_to(logfile, post, conv.set_status(Status.STOPPED, CLOSED_DETAIL))
    logfile.close()


@attrs.define
class _Waiter:
    event: trio.Event = attrs.Factory(trio.Event)
    answers: dict[str, Answer] | None = None
    decision: Decision | None = None


class WorkspaceSession:
    """Runs one session of a workspace; :meth:`run` lives in the workspace's nursery.

    main prepares the working tree and then sets ``workdir_ready``; the
    workspace's other sessions wait for it and work in the same tree.
    """

    def __init__(
        self,
        conv: Conversation,
        logfile: LogFile,
        *,
        engine: Engine,
        workdir: Path,
        post: Post,
        plan: WorkdirPlan,
        max_queued: int = DEFAULT_MAX_QUEUED_MESSAGES,
        allow_bypass: bool = True,
        workdir_ready: trio.Event | None = None,
        attachment_limits: AttachmentLimits | None = None,
    ) -> None:
        self.conv = conv
        self.logfile = logfile
        self.engine = engine
        self.workdir = workdir
        self.workspace_id = conv.workspace_id
        #: The protocol's ``sessionId`` of this session (``session_id`` is Claude Code's).
        self.sid = conv.sid
        self.workdir_ready = workdir_ready if workdir_ready is not None else trio.Event()
        self._post = post
        self._plan = plan
        # (clientMessageId, text, attachments) of accepted messages waiting for the engine.
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[str, str, Attachments]](
            max_queued
        )
        self._attachment_limits = attachment_limits or AttachmentLimits()
        self._max_queued = max_queued
        self._allow_bypass = allow_bypass
        self._configuring = False
        self._waiters: dict[str, _Waiter] = {}
        self._engine_session: EngineSession | None = None
        self._in_turn = False
        self._retry: tuple[str, str, Attachments] | None = None
        self._scope = trio.CancelScope()
        self.finished = trio.Event()
        # A log read back without its assignment (a damaged log started over)
        # waits for relayd's workspace_assigned before it clones.
        self._has_issue = trio.Event()
        if conv.issue is not None:
            self._has_issue.set()

    # -- Host (what engines use) -------------------------------------------------

    @property
    def issue(self) -> dict[str, Any] | None:
        """The issue this workspace works on."""
        return self.conv.issue

    @property
    def session_id(self) -> str | None:
        """The engine's session id kept in the log."""
        return self.conv.session_id

    @property
    def settings(self) -> SessionSettings:
        """The model and permission mode last chosen for this session (kept in the log)."""
        return self.conv.settings

    @property
    def bypass_allowed(self) -> bool:
        """Whether this VM lets the session switch to ``bypassPermissions``."""
        return self._allow_bypass

    def emit(self, line: str) -> None:
        """Log and send one stream-json line as a ``claude_message``.

        A line posing as vmagent's own list of sessions is dropped: only the
        workspace writes that list, and its latest line is what counts.
        """
        if SESSIONS_SUBTYPE in line and _is_sessions_line(line):
            log.warning(
                "dropped an engine line posing as the session list",
                extra={"workspaceId": self.workspace_id, "sessionId": self.sid},
            )
            return
        self.commit(self.conv.claude_line(line))

    async def ask_question(self, questions: list[dict[str, Any]]) -> dict[str, Answer]:
        """Open a ``user_question`` and wait for its first answer."""
        waiter = await self._ask(QUESTION, {"questions": questions})
        assert waiter.answers is not None
        return waiter.answers

    async def ask_permission(
        self, tool_name: str, tool_input: dict[str, Any], tool_use_id: str | None
    ) -> Decision:
        """Open a ``permission_request`` and wait for its first decision."""
        fields: dict[str, Any] = {"toolName": tool_name}
        if tool_use_id is not None:
            fields["toolUseId"] = tool_use_id
        fields["toolInput"] = tool_input
        waiter = await self._ask(PERMISSION, fields)
        assert waiter.decision is not None
        return waiter.decision

    async def _ask(self, kind: str, fields: dict[str, Any]) -> _Waiter:
        request_id, outs = self.conv.open_request(kind, fields)
        waiter = _Waiter()
        self._waiters[request_id] = waiter
        self.commit(outs)
        try:
            # No timeout on purpose: a question waits as long as it takes, and
            # nothing runs a tool without an answer.
            await waiter.event.wait()
        finally:
            del self._waiters[request_id]
            if request_id in self.conv.pending:  # cancelled: interrupt or shutdown
                self.commit(self.conv.resolve(request_id, "cancelled"))
                self._after_request()
        return waiter

    def _after_request(self) -> None:
        if not self.conv.pending:
            self.commit(self.conv.set_status(Status.RUNNING if self._in_turn else Status.IDLE))

    # -- committing ---------------------------------------------------------------

    def commit(self, outs: Iterable[Out | None]) -> None:
        """Write ``outs`` to the log (fsync when asked), then send them."""
        commit_to(self.logfile, self._post, outs)

    def _error(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        self._post(
            error_frame(code, message, workspace_id=self.workspace_id, ref=ref, session_id=self.sid)
        )

    # -- messages from relayd -----------------------------------------------------

    def user_message(self, message: UserMessage) -> None:
        """Accept a user message once, echo it, and queue it for the engine."""
        if self._inbox.statistics().current_buffer_used >= self._max_queued:
            self._error(
                ErrorCode.RATE_LIMITED,
                f"too many queued messages (at most {self._max_queued})",
                message.client_message_id,
            )
            return
        try:
            sizes = check_attachments(message.attachments, self._attachment_limits)
        except AttachmentError as exc:
            # Refused before the log: the message never was part of the conversation.
            self._error(exc.code, exc.message, message.client_message_id)
            return
        echoed = echo_attachments(message.attachments, sizes)
        accepted, outs = self.conv.accept_user_message(message, echoed)
        self.commit(outs)
        if accepted:
            self._inbox_send.send_nowait(
                (message.client_message_id, message.text, message.attachments)
            )

    def question_response(self, response: QuestionResponse) -> None:
        """The first answer wins; it wakes the waiting engine."""
        _pending, outs = self.conv.answer_question(response)
        waiter = self._waiters.get(response.request_id) if _pending else None
        self.commit(outs)
        if _pending is None:
            return
        if waiter is not None:
            waiter.answers = dict(response.answers)
            waiter.event.set()
        self._after_request()

    def permission_response(self, response: PermissionResponse) -> None:
        """The first decision wins; it wakes the waiting engine."""
        _pending, outs = self.conv.answer_permission(response)
        waiter = self._waiters.get(response.request_id) if _pending else None
        self.commit(outs)
        if _pending is None:
            return
        if waiter is not None:
            waiter.decision = Decision(response.allow, response.message, response.user_id)
            waiter.event.set()
        self._after_request()

    def interrupt(self, _message: Interrupt) -> None:
        """Stop the current turn (queued messages stay queued)."""
        if self._engine_session is not None and self._in_turn:
            self._engine_session.interrupt()

    def offered(self) -> dict[str, Any]:
        """The ``session_models`` op: the models on offer and the current settings."""
        models = self._engine_session.models() if self._engine_session is not None else []
        return offer(
            models,
            self.conv.settings,
            allow_bypass=self._allow_bypass,
            attachments=self._attachment_limits.offered(),
        )

    async def commands(self) -> dict[str, Any]:
        """The ``session_commands`` op: the slash commands the engine offers.

        ``ready`` is false while there is no engine to ask (the working
        directory is being prepared, or the engine failed: ``detail`` says
        why); the claude engine starts its CLI for the answer if need be.
        """
        engine_session = self._engine_session
        if engine_session is None:
            return {"commands": [], "ready": False}
        try:
            offered = await engine_session.commands()
        except EngineError as exc:
            return {"commands": [], "ready": False, "detail": str(exc)}
        return {"commands": offered, "ready": True}

    async def configure(self, args: dict[str, Any], user_id: str | None) -> dict[str, Any]:
        """The ``session_settings`` op: change the model and/or permission mode.

        Checked first (a mode Claude Code knows, bypass only where the operator
        allows it), then told to a running engine, then logged as a ``system``
        line so every viewer and every snapshot shows the current settings.
        Raises :class:`SettingsError` with what was wrong.
        """
        wanted = check_settings(args, allow_bypass=self._allow_bypass)
        model, mode = wanted.model, wanted.permission_mode
        if self.finished.is_set():
            raise SettingsError(ErrorCode.BAD_REQUEST, "session is closed")
        if self._configuring:
            raise SettingsError(ErrorCode.RATE_LIMITED, "a change of settings is under way")
        old = self.conv.settings
        new = SessionSettings(model or old.model, mode or old.permission_mode)
        self._configuring = True
        try:
            if self._engine_session is not None:
                try:
                    await self._engine_session.configure(
                        SessionSettings(model, mode)  # only what changed
                    )
                except EngineError as exc:
                    raise SettingsError(ErrorCode.BAD_REQUEST, str(exc)) from None
        finally:
            self._configuring = False
        if self.finished.is_set():  # closed or released meanwhile: its log is closed
            raise SettingsError(ErrorCode.BAD_REQUEST, "session is closed")
        self.emit(settings_line(new, user_id))
        return {"model": new.model, "permissionMode": new.permission_mode}

    def snapshot(self, request_id: str) -> None:
        """Answer a ``snapshot_request``."""
        self._post(self.conv.snapshot(request_id, self._attachment_limits.max_snapshot_chars))

    def assigned(self, issue: dict[str, Any]) -> None:
        """A repeated ``workspace_assigned``: record a changed issue, else nothing."""
        self.commit([self.conv.assign(issue)])
        self._has_issue.set()

    def stop(self) -> None:
        """Stop the session (``workspace_released`` or shutdown)."""
        self._scope.cancel()

    # -- the session's life ---------------------------------------------------------

    async def run(self) -> None:
        """Prepare the working directory, open the engine, run turns until stopped."""
        try:
            with self._scope:
                await self._run()
        finally:
            self.finished.set()

    async def _run(self) -> None:
        conv = self.conv
        # A restart leaves no one to answer what the previous process asked.
        self.commit(conv.cancel_pending())
        interrupted = conv.status in (Status.RUNNING, Status.WAITING_FOR_INPUT)
        idle_detail = "vmagent restarted; the turn in progress was stopped" if interrupted else None
        # A session found idle stays idle without a word: nothing changed for viewers.
        if conv.status != Status.IDLE or conv.seq == 0:
            self.commit(conv.set_status(Status.STARTING))
        for queued in conv.unstarted():
            try:
                self._inbox_send.send_nowait(queued)
            except trio.WouldBlock:
                log.warning(
                    "more unstarted messages than the queue holds; dropping one",
                    extra={"workspaceId": self.workspace_id, "ref": queued[0]},
                )
                self.commit([conv.start_turn(queued[0])])
        if self.sid != MAIN_SESSION:
            await self.workdir_ready.wait()
        elif self._plan.clone:
            await self._has_issue.wait()
        while self.sid == MAIN_SESSION:
            try:
                await prepare_workdir(self._plan, conv.issue, self.workdir)
                break
            except WorkdirError as exc:
                log.warning(
                    "working directory not prepared",
                    extra={"workspaceId": self.workspace_id, "detail": str(exc)},
                )
                self.commit(conv.set_status(Status.ERROR, str(exc)))
                # The next message tries again (a clone can fail for passing reasons);
                # it then becomes the first turn.
                self._retry = await self._inbox.receive()
                self.commit(conv.set_status(Status.STARTING))
        while True:
            try:
                async with self.engine.open(self) as engine_session:
                    self._engine_session = engine_session
                    try:
                        # After the engine opened: it may make the tree (the demo seeds it).
                        self.workdir_ready.set()
                        self.commit(conv.set_status(Status.IDLE, idle_detail))
                        idle_detail = None
                        await self._turns(engine_session)
                    finally:
                        # Ops running in the agent's nursery must not reach a closed engine.
                        self._engine_session = None
            except* EngineError as group:
                failure = _first_leaf(group)
                self._engine_session = None
                self._in_turn = False
                self.commit(conv.cancel_pending())
                self.commit(conv.set_status(Status.ERROR, str(failure)))
                log.warning(
                    "engine failed",
                    extra={"workspaceId": self.workspace_id, "detail": str(failure)},
                )
                # Wait for the next message before trying again; it becomes the
                # first turn of the new engine session.
                self._retry = await self._inbox.receive()

    async def _turns(self, engine_session: EngineSession) -> None:
        retry, self._retry = self._retry, None
        while True:
            client_id, text, attachments = (
                retry if retry is not None else await self._inbox.receive()
            )
            retry = None
            self._in_turn = True
            self.commit([self.conv.start_turn(client_id)])
            self.commit(self.conv.set_status(Status.RUNNING))
            try:
                await engine_session.turn(text, attachments)
            finally:
                self._in_turn = False
            self.commit(self.conv.cancel_pending())
            if self._inbox.statistics().current_buffer_used == 0:
                self.commit(self.conv.set_status(Status.IDLE))

    def close(self, *, released: bool, closed: bool = False) -> None:
        """After :meth:`run`: record the end (released, or the session closed) and close the log."""
        if closed:
            close_log(self.conv, self.logfile, self._post)
            return
        self.commit(self.conv.cancel_pending())
        if released:
            self.commit(self.conv.set_status(Status.STOPPED))
            if self.sid == MAIN_SESSION:
                self.commit([self.conv.release()])
        self.logfile.close()


def offer(
    models: list[dict[str, str]],
    current: SessionSettings,
    *,
    allow_bypass: bool,
    attachments: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The ``session_models`` result: the models on offer, the settings in use and
    (for a session that takes messages) the attachment limits."""
    result: dict[str, Any] = {
        "models": models,
        "model": current.model,
        "permissionMode": current.permission_mode,
        "bypassAllowed": allow_bypass,
    }
    if attachments is not None:
        result["attachments"] = attachments
    return result


def check_settings(args: dict[str, Any], *, allow_bypass: bool) -> SessionSettings:
    """The change a ``session_settings`` op asks for, or :class:`SettingsError` saying why not."""
    model, mode = args.get("model"), args.get("permissionMode")
    if model is not None and (not isinstance(model, str) or not 0 < len(model) <= MAX_MODEL_NAME):
        raise SettingsError(
            ErrorCode.BAD_REQUEST,
            f"model must be a non-empty string of at most {MAX_MODEL_NAME} characters",
        )
    if mode is not None and mode not in PERMISSION_MODES:
        raise SettingsError(
            ErrorCode.BAD_REQUEST, f"permissionMode must be one of {', '.join(PERMISSION_MODES)}"
        )
    if model is None and mode is None:
        raise SettingsError(ErrorCode.BAD_REQUEST, "give model, permissionMode or both")
    if mode == BYPASS_MODE and not allow_bypass:
        raise SettingsError(
            ErrorCode.FORBIDDEN, "bypassPermissions is disabled on this VM by its operator"
        )
    return SessionSettings(model, mode)


class SettingsError(Exception):
    """A ``session_settings`` op refused, with the error code for its reply."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _is_sessions_line(line: str) -> bool:
    try:
        data = json.loads(line)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("subtype") == SESSIONS_SUBTYPE


def _first_leaf(group: BaseExceptionGroup[EngineError]) -> EngineError:
    """The first EngineError of a (possibly nested) exception group."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    assert isinstance(first, EngineError)
    return first

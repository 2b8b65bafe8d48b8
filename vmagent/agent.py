"""The agent: dials relayd, keeps dialling, and routes its frames to workspaces.

One task keeps the connection (jittered exponential backoff between
attempts); each workspace is a :class:`~vmagent.workspace.Workspace` task in
the agent's nursery (its sessions are tasks in its own), so workspaces
outlive connections. Frames go out through a bounded per-connection queue
filled with ``send_nowait``: producers never wait on the network, and a queue
that overflows closes the connection (relayd catches up from the log after
the reconnect, through ``hello`` and snapshots).
"""

from __future__ import annotations

import importlib.metadata
import logging
import random
from pathlib import Path
from typing import Any, Final

import attrs
import jwt
import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from vmagent.attachments import AttachmentLimits
from vmagent.conversation import Conversation
from vmagent.engines.base import Engine
from vmagent.op_server import DEFAULT_MAX_REPLY_CHARS, OpServer, reply_frame
from vmagent.publish import PublishSettings
from vmagent.session import DEFAULT_MAX_QUEUED_MESSAGES, SettingsError, WorkspaceSession
from vmagent.session_list import LIST_OPS, SessionOpError
from vmagent.store import LogFile, Store, valid_workspace_id
from vmagent.terminals import TerminalLimits, Terminals
from vmagent.workdir import WorkdirPlan
from vmagent.workspace import SessionLimits, Workspace
from vmagent.workspace_ops import OpLimits
from wire.codec import ProtocolError, loads
from wire.frames import (
    SnapshotRequest,
    WorkspaceAssigned,
    WorkspaceReleased,
    structure_relay_to_vm,
)
from wire.messages import (
    Interrupt,
    PermissionResponse,
    QuestionResponse,
    Request,
    TerminalClose,
    TerminalInput,
    TerminalResize,
    UserMessage,
    dumps,
    error_frame,
    ref_of,
)
from wire.protocol import (
    FORWARDED_CLIENT_TYPES,
    SUBPROTOCOL,
    TERMINAL_OPEN,
    VM_PATH,
    ErrorCode,
    RelayType,
    VmType,
    session_or_main,
)

log = logging.getLogger("vmagent.agent")

#: Frames queued for relayd per connection before the connection is given up.
DEFAULT_OUTBOX_LIMIT: Final = 10_000
#: Largest frame accepted from relayd, in characters.
DEFAULT_MAX_FRAME: Final = 16 * 1024 * 1024
DEFAULT_BACKOFF_INITIAL: Final = 0.5
DEFAULT_BACKOFF_MAX: Final = 30.0
#: A connection that lasted this long resets the backoff.
STABLE_CONNECTION: Final = 10.0
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: Seconds between looks at the token file; a new token is sent as ``auth``.
DEFAULT_TOKEN_CHECK_INTERVAL: Final = 30.0


def agent_version() -> str:
    """This package's version, for ``hello``."""
    try:
        return importlib.metadata.version("ffcloud")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def vm_url(relay_url: str) -> str:
    """The ``/v1/vm`` URL of a relay given as ``ws://host:port`` (or already with the path)."""
    base = relay_url.rstrip("/")
    return base if base.endswith(VM_PATH) else base + VM_PATH


def vm_id_of(token: str) -> str:
    """The VM id (``sub``) of our own token, read without verifying it (relayd verifies)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "unknown"
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else "unknown"


class Backoff:
    """Full-jitter exponential backoff: a random wait up to a doubling cap."""

    def __init__(
        self,
        initial: float = DEFAULT_BACKOFF_INITIAL,
        maximum: float = DEFAULT_BACKOFF_MAX,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    def next(self) -> float:
        """Seconds to wait before the next attempt."""
        cap = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return self._rng.uniform(cap / 2, cap)

    def reset(self) -> None:
        """Start over after a good connection."""
        self.attempt = 0


@attrs.frozen
class AgentSettings:
    """Everything the agent needs, from the command line or the environment."""

    relay_url: str
    token_file: Path
    state_dir: Path
    plan: WorkdirPlan
    outbox_limit: int = DEFAULT_OUTBOX_LIMIT
    max_frame: int = DEFAULT_MAX_FRAME
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL
    backoff_max: float = DEFAULT_BACKOFF_MAX
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES
    token_check_interval: float = DEFAULT_TOKEN_CHECK_INTERVAL
    ops: OpLimits = attrs.Factory(OpLimits)
    publish: PublishSettings = attrs.Factory(PublishSettings)
    max_reply_chars: int = DEFAULT_MAX_REPLY_CHARS
    terminals: TerminalLimits = attrs.Factory(TerminalLimits)
    sessions: SessionLimits = attrs.Factory(SessionLimits)
    #: Whether users may switch a session to ``bypassPermissions``.
    allow_bypass_permissions: bool = True
    attachments: AttachmentLimits = attrs.Factory(AttachmentLimits)


#: The ``request`` op that changes a session's model or permission mode.
SETTINGS_OP: Final = "session_settings"
#: The ``request`` op that lists the models on offer and the current settings.
MODELS_OP: Final = "session_models"
#: The ``request`` op that lists the session's slash commands.
COMMANDS_OP: Final = "session_commands"


class Agent:
    """Owns the workspaces of this VM and the connection to relayd."""

    def __init__(
        self,
        settings: AgentSettings,
        engine: Engine,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = Store(settings.state_dir)
        self.workspaces: dict[str, Workspace] = {}
        self._released: set[str] = set()
        self._out: trio.MemorySendChannel[str] | None = None
        self._conn_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        #: Connections made to relayd so far (for tests and logs).
        self.connects = 0
        self.ops = OpServer(
            self.post,
            self.store.work_dir,
            limits=settings.ops,
            max_reply_chars=settings.max_reply_chars,
            issue=self._issue_of,
            publish=settings.publish,
        )
        self.terminals = Terminals(
            self.post, self.store.work_dir, limits=settings.terminals, room=self._out_room
        )

    @property
    def sessions(self) -> dict[str, WorkspaceSession]:
        """The main session of each workspace held."""
        return {ws: w.main for ws, w in self.workspaces.items()}

    def _issue_of(self, workspace_id: str) -> dict[str, Any] | None:
        workspace = self.workspaces.get(workspace_id)
        return workspace.issue if workspace is not None else None

    # -- life ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the logs, start their sessions, then stay connected to relayd."""
        self.store.prepare()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.ops.run)
            await nursery.start(self.terminals.run)
            for workspace_id in self.store.known_ids():
                conv, logfile = self.store.open(workspace_id)
                if conv.released:
                    logfile.close()
                    continue
                self._start_workspace(self._make_workspace(conv, logfile))
            task_status.started()
            await self._connect_forever()

    def _start_workspace(self, workspace: Workspace) -> None:
        assert self._nursery is not None
        self.workspaces[workspace.workspace_id] = workspace
        self._nursery.start_soon(self._run_workspace, workspace)

    def _make_workspace(self, conv: Conversation, logfile: LogFile) -> Workspace:
        """The workspace whose main log is ``conv``, with the other sessions its list names."""
        return Workspace(
            conv,
            logfile,
            store=self.store,
            make_session=self._make_session,
            post=self.post,
            limits=self.settings.sessions,
            allow_bypass=self.settings.allow_bypass_permissions,
            snapshot_attachment_chars=self.settings.attachments.max_snapshot_chars,
        )

    def _make_session(
        self, conv: Conversation, logfile: LogFile, workdir_ready: trio.Event
    ) -> WorkspaceSession:
        return WorkspaceSession(
            conv,
            logfile,
            engine=self.engine,
            workdir=self.store.work_dir(conv.workspace_id),
            post=self.post,
            plan=self.settings.plan,
            max_queued=self.settings.max_queued_messages,
            allow_bypass=self.settings.allow_bypass_permissions,
            workdir_ready=workdir_ready,
            attachment_limits=self.settings.attachments,
        )

    async def _run_workspace(self, workspace: Workspace) -> None:
        try:
            await workspace.run()
        finally:
            self._released.discard(workspace.workspace_id)
            if self.workspaces.get(workspace.workspace_id) is workspace:
                del self.workspaces[workspace.workspace_id]

    # -- the connection -------------------------------------------------------------

    def post(self, frame: str) -> None:
        """Queue one frame for relayd; dropped while disconnected (the log keeps it)."""
        out = self._out
        if out is None:
            return
        try:
            out.send_nowait(frame)
        except trio.WouldBlock:
            log.warning("outgoing queue full; dropping the connection to catch up later")
            self._out = None
            if self._conn_scope is not None:
                self._conn_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._out = None

    def _out_room(self) -> bool:
        """Whether the outgoing queue is at most half full (terminals pause past that)."""
        out = self._out
        if out is None:
            return False
        stats = out.statistics()
        return stats.current_buffer_used * 2 <= stats.max_buffer_size

    def _hello(self, vm_id: str) -> str:
        return dumps(
            {
                "type": VmType.HELLO,
                "vmId": vm_id,
                "agentVersion": agent_version(),
                "workspaces": [
                    conv.hello_entry()
                    for workspace in self.workspaces.values()
                    for conv in workspace.conversations()
                ],
            }
        )

    async def _connect_forever(self) -> None:
        settings = self.settings
        backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        url = vm_url(settings.relay_url)
        while True:
            started = trio.current_time()
            try:
                token = settings.token_file.read_text().strip()
                if not token:
                    raise OSError("the token file is empty")
            except OSError as exc:
                log.error("cannot read the VM token", extra={"error": str(exc)})
            else:
                try:
                    await self._connect_once(url, token)
                except Exception as exc:  # every failure means: wait, then dial again
                    log.warning(
                        "relay connection ended",
                        extra={"url": url, "error": f"{type(exc).__name__}: {exc}"[:300]},
                    )
                if trio.current_time() - started >= STABLE_CONNECTION:
                    backoff.reset()
            await trio.sleep(backoff.next())

    async def _connect_once(self, url: str, token: str) -> None:
        settings = self.settings
        headers = [(b"authorization", b"Bearer " + token.encode())]
        async with open_websocket_url(
            url,
            subprotocols=[SUBPROTOCOL],
            extra_headers=headers,
            max_message_size=settings.max_frame,
            connect_timeout=settings.connect_timeout,
            disconnect_timeout=2.0,
        ) as ws:
            await self._serve(ws, vm_id_of(token), token)

    async def _serve(self, ws: WebSocketConnection, vm_id: str, token: str) -> None:
        if ws.subprotocol != SUBPROTOCOL:
            raise ConnectionError(f"relay chose subprotocol {ws.subprotocol!r}")
        send, receive = trio.open_memory_channel[str](self.settings.outbox_limit)
        # hello and the switch to this connection's queue happen in one step, so
        # every frame logged before it is covered by hello's seq and every one
        # after it is sent.
        send.send_nowait(self._hello(vm_id))
        self._out = send
        self.connects += 1
        log.info("connected to relay", extra={"vmId": vm_id, "workspaces": len(self.workspaces)})
        try:
            async with trio.open_nursery() as nursery:
                self._conn_scope = nursery.cancel_scope
                nursery.start_soon(self._writer, ws, receive)
                nursery.start_soon(self._watch_token, token)
                try:
                    while True:
                        message = await ws.get_message()
                        self.dispatch(message)
                except ConnectionClosed as exc:
                    # A close is how a connection ends, not a failure: as an
                    # exception it would meet a concurrent cancellation (relayd
                    # and vmagent stopped together) in an exception group that
                    # nothing here catches, and crash the agent on its way out.
                    why = exc.reason
                    log.info(
                        "relay closed the connection",
                        extra={"code": why and why.code, "reason": why and why.reason},
                    )
                    nursery.cancel_scope.cancel()
        finally:
            # Every client connection came through this one: their terminals end.
            self.terminals.close_all()
            self._conn_scope = None
            if self._out is send:
                self._out = None
            send.close()

    async def _watch_token(self, token: str) -> None:
        """Send a renewed token (the token file changed) before the old one expires."""
        while True:
            await trio.sleep(self.settings.token_check_interval)
            try:
                fresh = self.settings.token_file.read_text().strip()
            except OSError:
                continue
            if fresh and fresh != token:
                token = fresh
                log.info("sending the renewed VM token")
                self.post(dumps({"type": VmType.AUTH, "token": fresh}))

    async def _writer(
        self, ws: WebSocketConnection, receive: trio.MemoryReceiveChannel[str]
    ) -> None:
        async with receive:
            try:
                async for frame in receive:
                    await ws.send_message(frame)
            except ConnectionClosed:
                return  # the reader sees the close too and ends the connection

    # -- frames from relayd ---------------------------------------------------------

    def _error(
        self, code: ErrorCode, message: str, workspace_id: str | None = None, ref: str | None = None
    ) -> None:
        self.post(error_frame(code, message, workspace_id=workspace_id, ref=ref))

    def dispatch(self, frame: str | bytes) -> None:
        """Handle one frame from relayd; bad input gets one ``error`` and nothing else."""
        if isinstance(frame, bytes):
            self._error(ErrorCode.BAD_REQUEST, "binary frames are not accepted; send JSON text")
            return
        try:
            obj = loads(frame)
        except ProtocolError as exc:
            self._error(exc.code, exc.message)
            return
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            self._error(ErrorCode.BAD_REQUEST, "frame must be a JSON object with a string 'type'")
            return
        kind = obj["type"]
        if kind == RelayType.ERROR:
            log.warning("relay reported an error", extra={"frame": frame[:500]})
            return
        if kind not in _HANDLED:
            self._error(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}")
            return
        # vmagent's own rule beside the protocol's: the id names a directory.
        workspace_id = obj.get("workspaceId")
        if not isinstance(workspace_id, str) or not valid_workspace_id(workspace_id):
            self._error(ErrorCode.BAD_REQUEST, f"{kind} needs a valid 'workspaceId'")
            return
        workspace = self.workspaces.get(workspace_id)
        if workspace is None and kind != RelayType.WORKSPACE_ASSIGNED:
            self._error(
                ErrorCode.NOT_FOUND,
                "this VM does not hold that workspace",
                workspace_id,
                ref_of(obj),
            )
            return
        try:
            message = structure_relay_to_vm(obj)
        except ProtocolError as exc:
            self._error(exc.code, exc.message, workspace_id, exc.ref)
            return
        if isinstance(message, WorkspaceAssigned):
            self._assigned(workspace_id, msgspec.to_builtins(message.issue))
            return
        assert workspace is not None
        # The decoders checked it; a message without one is about main.
        self._route(workspace, session_or_main(getattr(message, "session_id", None)), message)

    def _route(self, workspace: Workspace, sid: str, message: object) -> None:
        """Hand a decoded message to its workspace and session."""
        if isinstance(message, WorkspaceReleased):
            self._released.add(workspace.workspace_id)
            workspace.stop(released=True)
        elif isinstance(message, SnapshotRequest):
            workspace.snapshot(sid, message.request_id)
        elif isinstance(message, UserMessage):
            session = workspace.running(sid, message.client_message_id)
            if session is not None:
                session.user_message(message)
        elif isinstance(message, QuestionResponse):
            session = workspace.running(sid, message.request_id)
            if session is not None:
                session.question_response(message)
        elif isinstance(message, PermissionResponse):
            session = workspace.running(sid, message.request_id)
            if session is not None:
                session.permission_response(message)
        elif isinstance(message, Interrupt):
            # A closed session has no turn to stop: nothing to do, nothing to say.
            if workspace.conversation(sid, None) is not None and not workspace.is_closed(sid):
                workspace.open[sid].interrupt(message)
        elif isinstance(message, Request):
            self._request(workspace, sid, message)
        elif isinstance(message, TerminalInput):
            self.terminals.input(message)
        elif isinstance(message, TerminalResize):
            self.terminals.resize(message)
        elif isinstance(message, TerminalClose):
            self.terminals.close(message)

    def _request(self, workspace: Workspace, sid: str, request: Request) -> None:
        if workspace.conversation(sid, request.request_id) is None:
            return  # not_found sent
        if request.op in LIST_OPS:
            try:
                result = workspace.session_op(request.op, sid, request.args)
            except SessionOpError as exc:
                self.post(reply_frame(request, code=exc.code, message=exc.message))
                return
            self.post(reply_frame(request, result=result))
        elif request.op == MODELS_OP:
            self.post(reply_frame(request, result=workspace.offered(sid)))
        elif request.op in (SETTINGS_OP, COMMANDS_OP):
            if workspace.is_closed(sid):
                self.post(
                    reply_frame(request, code=ErrorCode.BAD_REQUEST, message="session is closed")
                )
                return
            # The session's own ops: about the conversation, not the tree.
            assert self._nursery is not None
            work = self._configure if request.op == SETTINGS_OP else self._commands
            self._nursery.start_soon(work, workspace.open[sid], request)
        elif request.op == TERMINAL_OPEN:
            self.terminals.open(request)
        else:
            self.ops.submit(request)

    async def _configure(self, session: WorkspaceSession, request: Request) -> None:
        try:
            result = await session.configure(request.args, request.user_id)
        except SettingsError as exc:
            self.post(reply_frame(request, code=exc.code, message=exc.message))
            return
        self.post(reply_frame(request, result=result))

    async def _commands(self, session: WorkspaceSession, request: Request) -> None:
        self.post(reply_frame(request, result=await session.commands()))

    async def _assign_after_stop(self, old: Workspace, issue: dict[str, Any]) -> None:
        await old.finished.wait()
        # _run_workspace has forgotten ``old`` in the same step.
        self._assigned(old.workspace_id, issue)

    def _assigned(self, workspace_id: str, issue: dict[str, Any]) -> None:
        workspace = self.workspaces.get(workspace_id)
        if workspace is not None:
            if workspace_id in self._released:
                # Released and assigned again before its sessions finished stopping.
                assert self._nursery is not None
                self._nursery.start_soon(self._assign_after_stop, workspace, issue)
                return
            workspace.main.assigned(issue)  # a repeat on reconnect: a no-op unless it changed
            return
        self._released.discard(workspace_id)
        workspace = self._make_workspace(*self.store.open(workspace_id))
        workspace.main.assigned(issue)
        self._start_workspace(workspace)


_HANDLED: Final = frozenset(
    {
        RelayType.WORKSPACE_ASSIGNED,
        RelayType.WORKSPACE_RELEASED,
        RelayType.SNAPSHOT_REQUEST,
        *FORWARDED_CLIENT_TYPES,
    }
)

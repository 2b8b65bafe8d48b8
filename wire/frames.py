"""Typed VM and relay messages and their strict decoders (docs/protocol.md section 3).

Client-to-relay messages live in :mod:`wire.messages`; this module has the
rest: what a VM sends (:data:`VmMessage`), what relayd sends a VM
(:data:`RelayToVmMessage`, beside the client messages it forwards) and what
relayd itself sends a client (:data:`RelayToClientMessage`, beside the VM
frames it forwards).

Decoding is two steps, both strict: the text through :func:`wire.codec.loads`
(valid JSON and Unicode, no repeated key), then the value into its class by
msgspec, which coerces nothing (``"5"`` is not ``5``, ``true`` not ``1``).
Unknown fields are ignored. A wrong or missing field is a
:class:`ProtocolError` with ``bad_request``; an unknown ``type``,
``unknown_type``. relayd's hot path does not come here: it reads only the
envelope (:mod:`wire.envelope`) of the frames it forwards as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, TypeAlias, TypeVar

import msgspec

from wire.codec import ProtocolError, dumps, loads
from wire.envelope import MAX_SEQ, SessionId
from wire.messages import MAX_ID_LENGTH, ClientMessage, ref_of, structure_client_message
from wire.protocol import ErrorCode, RelayType, Resolution, VmType

T = TypeVar("T")

#: An id of the protocol (workspace, request, message): non-empty, bounded.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
#: ``seq`` of a log entry: the first one is 1.
LogSeq = Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]


class _Frame(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True, tag_field="type"):
    """Common configuration: camelCase on the wire, ``type`` as the tag."""


# -- VM to relay ----------------------------------------------------------------


class HelloEntry(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True, kw_only=True):
    """One log the VM holds, as ``hello`` lists it."""

    workspace_id: Id
    #: Which of the workspace's session logs (absent: main).
    session_id: SessionId | None = None
    epoch: str
    seq: Seq
    status: str | None = None
    status_detail: str | None = None


class Hello(_Frame, frozen=True, tag=str(VmType.HELLO)):
    """The VM's first message: what it holds and how far each log goes."""

    vm_id: str | None = None
    agent_version: str | None = None
    workspaces: list[HelloEntry] = []


class ClaudeMessage(_Frame, frozen=True, kw_only=True, tag=str(VmType.CLAUDE_MESSAGE)):
    """One Claude Code stream-json line (``data``) of a workspace's log."""

    workspace_id: Id
    session_id: SessionId | None = None
    seq: LogSeq
    epoch: str
    data: dict[str, Any]


class EchoedImage(
    msgspec.Struct, frozen=True, rename="camel", omit_defaults=True, tag_field="type", tag="image"
):
    """An image of an accepted ``user_message``; ``size`` is its decoded bytes.

    ``data`` is left out (and ``omitted`` set) only in a snapshot that keeps
    no more of the older attachments (vmagent's ``--max-snapshot-attachment-chars``).
    """

    media_type: Literal["image/png", "image/jpeg", "image/gif", "image/webp"]
    size: Annotated[int, msgspec.Meta(ge=0)]
    name: str | None = None
    data: str | None = None
    omitted: bool = False


class EchoedText(
    msgspec.Struct, frozen=True, rename="camel", omit_defaults=True, tag_field="type", tag="text"
):
    """A text file of an accepted ``user_message``; ``size`` is its characters."""

    name: str
    size: Annotated[int, msgspec.Meta(ge=0)]
    text: str | None = None
    omitted: bool = False


class VmUserMessage(_Frame, frozen=True, kw_only=True, tag=str(VmType.USER_MESSAGE)):
    """A user message as the VM accepted it into the conversation."""

    workspace_id: Id
    session_id: SessionId | None = None
    seq: LogSeq
    epoch: str
    client_message_id: Id
    text: str
    user_id: str | None = None
    attachments: list[EchoedImage | EchoedText] = []


class StatusMessage(_Frame, frozen=True, kw_only=True, tag=str(VmType.STATUS)):
    """Session status, part of the log (``seq``)."""

    workspace_id: Id
    session_id: SessionId | None = None
    seq: LogSeq
    epoch: str
    status: str
    detail: str | None = None


class QuestionOption(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """One answer a question offers."""

    label: str
    description: str | None = None


class Question(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """One question of a ``user_question`` (Claude Code's AskUserQuestion)."""

    question: str
    options: list[QuestionOption] = []
    header: str | None = None
    multi_select: bool = False


class UserQuestion(_Frame, frozen=True, kw_only=True, tag=str(VmType.USER_QUESTION)):
    """Claude asks the user."""

    workspace_id: Id
    session_id: SessionId | None = None
    seq: LogSeq
    epoch: str
    request_id: Id
    questions: list[Question]


class PermissionRequest(_Frame, frozen=True, kw_only=True, tag=str(VmType.PERMISSION_REQUEST)):
    """Claude wants to use a tool and needs a yes or no."""

    workspace_id: Id
    session_id: SessionId | None = None
    seq: LogSeq
    epoch: str
    request_id: Id
    tool_name: str
    tool_input: dict[str, Any]
    tool_use_id: str | None = None


class RequestResolved(_Frame, frozen=True, kw_only=True, tag=str(VmType.REQUEST_RESOLVED)):
    """A question or permission is settled (``user_id``: who answered)."""

    workspace_id: Id
    session_id: SessionId | None = None
    seq: LogSeq
    epoch: str
    request_id: Id
    resolution: Resolution
    user_id: Id | None = None


class MessagesSnapshot(_Frame, frozen=True, kw_only=True, tag=str(VmType.MESSAGES_SNAPSHOT)):
    """The whole conversation state up to and including ``seq``."""

    workspace_id: Id
    session_id: SessionId | None = None
    seq: Seq
    epoch: str
    request_id: Id
    status: str
    messages: list[Any]
    pending: list[Any]
    status_detail: str | None = None


class ErrorMessage(_Frame, frozen=True, tag=str(VmType.ERROR)):
    """Something a peer could not do (``ref``: the message it is about)."""

    code: ErrorCode
    message: str
    workspace_id: str | None = None
    session_id: SessionId | None = None
    ref: str | None = None


class ReplyError(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """Why a ``request`` failed: a code of :class:`ErrorCode` and words for the user."""

    code: ErrorCode
    message: str


class Reply(_Frame, frozen=True, tag=str(VmType.REPLY)):
    """The VM's answer to one client's ``request``: for that connection alone, not logged.

    ``ok`` with a ``result`` (the op's), or not ``ok`` with an ``error``.
    ``connection_id`` echoes the one relayd tagged the request with.
    """

    workspace_id: Id
    request_id: Id
    ok: bool
    result: Any = None
    error: ReplyError | None = None
    connection_id: str | None = None

    def __post_init__(self) -> None:
        if not self.ok and self.error is None:
            raise ValueError("a reply that is not ok needs an error")


class TerminalOutput(_Frame, frozen=True, tag=str(VmType.TERMINAL_OUTPUT)):
    """Output of a terminal, for the one connection that opened it; not logged."""

    workspace_id: Id
    terminal_id: Id
    connection_id: Id
    data: str


class TerminalExit(_Frame, frozen=True, tag=str(VmType.TERMINAL_EXIT)):
    """A terminal ended: its shell exited (``exit_code``) or it was closed."""

    workspace_id: Id
    terminal_id: Id
    connection_id: Id
    exit_code: int | None = None
    reason: str | None = None


class VmAuth(_Frame, frozen=True, tag=str(VmType.AUTH)):
    """A renewed token."""

    token: str


VmMessage: TypeAlias = (
    Hello
    | ClaudeMessage
    | VmUserMessage
    | StatusMessage
    | UserQuestion
    | PermissionRequest
    | RequestResolved
    | MessagesSnapshot
    | ErrorMessage
    | Reply
    | VmAuth
    | TerminalOutput
    | TerminalExit
)


# -- relay to VM ----------------------------------------------------------------


class Issue(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """The GitHub issue a workspace works on."""

    url: str
    owner: str
    repo: str
    number: Annotated[int, msgspec.Meta(ge=1)]
    title: str | None = None
    body: str | None = None


class WorkspaceAssigned(_Frame, frozen=True, tag=str(RelayType.WORKSPACE_ASSIGNED)):
    """This VM now owns the workspace."""

    workspace_id: Id
    issue: Issue


class WorkspaceReleased(_Frame, frozen=True, tag=str(RelayType.WORKSPACE_RELEASED)):
    """This VM no longer owns the workspace."""

    workspace_id: Id


class SnapshotRequest(_Frame, frozen=True, kw_only=True, tag=str(RelayType.SNAPSHOT_REQUEST)):
    """Send a ``messages_snapshot`` with this ``request_id``."""

    workspace_id: Id
    session_id: SessionId | None = None
    request_id: Id


RelayToVmMessage: TypeAlias = (
    WorkspaceAssigned | WorkspaceReleased | SnapshotRequest | ErrorMessage | ClientMessage
)


# -- relay to client ------------------------------------------------------------


class Subscribed(_Frame, frozen=True, kw_only=True, tag=str(RelayType.SUBSCRIBED)):
    """Answer to ``subscribe``, before the replay or the snapshot."""

    workspace_id: Id
    session_id: SessionId | None = None
    mode: Literal["replay", "snapshot", "status"]
    epoch: str | None


class RelayStatus(_Frame, frozen=True, kw_only=True, tag=str(RelayType.STATUS)):
    """relayd's own word on a workspace's status (no ``seq``: not part of the log)."""

    workspace_id: Id
    session_id: SessionId | None = None
    status: str
    detail: str | None = None


RelayToClientMessage: TypeAlias = Subscribed | RelayStatus | ErrorMessage | VmMessage

# -- decoding -------------------------------------------------------------------

VM_MESSAGE_CLASSES: Final[Mapping[str, type[Any]]] = {
    str(cls.__struct_config__.tag): cls
    for cls in (
        Hello,
        ClaudeMessage,
        VmUserMessage,
        StatusMessage,
        UserQuestion,
        PermissionRequest,
        RequestResolved,
        MessagesSnapshot,
        ErrorMessage,
        Reply,
        VmAuth,
    )
}
RELAY_TO_VM_CLASSES: Final[Mapping[str, type[Any]]] = {
    str(cls.__struct_config__.tag): cls
    for cls in (WorkspaceAssigned, WorkspaceReleased, SnapshotRequest, ErrorMessage)
}
#: What relayd writes to a client itself; a sequenced ``status`` is the VM's.
_RELAY_TO_CLIENT_OWN: Final[Mapping[str, type[Any]]] = {
    str(RelayType.SUBSCRIBED): Subscribed,
    str(RelayType.ERROR): ErrorMessage,
}


def structure(obj: object, cls: type[T]) -> T:
    """Turn a parsed JSON value into a message of ``cls``, or raise :class:`ProtocolError`."""
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")
    try:
        return msgspec.convert(obj, cls)
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame is nested too deeply") from None
    except msgspec.ValidationError as exc:
        tag = cls.__struct_config__.tag if issubclass(cls, msgspec.Struct) else cls.__name__
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"invalid {tag}: {str(exc)[:300]}", ref_of(obj)
        ) from None


def _kind(obj: object) -> str:
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame needs a string field 'type'")
    return kind


def _unknown(kind: str) -> ProtocolError:
    return ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}")


def structure_vm_message(obj: object) -> VmMessage:
    """A parsed VM frame as its typed message."""
    cls = VM_MESSAGE_CLASSES.get(_kind(obj))
    if cls is None:
        raise _unknown(_kind(obj))
    message: VmMessage = structure(obj, cls)
    return message


def decode_vm_message(frame: str | bytes) -> VmMessage:
    """Decode one VM frame whole (relayd's hot path reads the envelope only)."""
    return structure_vm_message(loads(_text(frame)))


def structure_relay_to_vm(obj: object) -> RelayToVmMessage:
    """A parsed relay-to-VM frame: relayd's own, or a client message it forwarded
    (whose ``userId`` relayd set, so it is kept)."""
    kind = _kind(obj)
    cls = RELAY_TO_VM_CLASSES.get(kind)
    if cls is None:
        return structure_client_message(obj, trust_user_id=True)
    message: RelayToVmMessage = structure(obj, cls)
    return message


def decode_relay_to_vm(frame: str | bytes) -> RelayToVmMessage:
    """Decode one frame relayd sent a VM."""
    return structure_relay_to_vm(loads(_text(frame)))


def structure_relay_to_client(obj: object) -> RelayToClientMessage:
    """A parsed relay-to-client frame: relayd's own, or a VM frame it forwarded."""
    kind = _kind(obj)
    own = _RELAY_TO_CLIENT_OWN.get(kind)
    if own is not None:
        message: RelayToClientMessage = structure(obj, own)
        return message
    if kind == RelayType.STATUS and isinstance(obj, dict) and "seq" not in obj:
        return structure(obj, RelayStatus)
    return structure_vm_message(obj)


def decode_relay_to_client(frame: str | bytes) -> RelayToClientMessage:
    """Decode one frame relayd sent a client."""
    return structure_relay_to_client(loads(_text(frame)))


def encode_frame(message: msgspec.Struct) -> str:
    """One JSON text frame for a typed message (``type`` first)."""
    return dumps(msgspec.to_builtins(message))


def _text(frame: str | bytes) -> str:
    if isinstance(frame, bytes):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "binary frames are not accepted; send JSON text")
    return frame

"""Typed client messages and their JSON codec.

Clients' frames are small and untrusted, so relayd decodes them fully into
these classes (and so does the VM, which gets them forwarded with ``userId``).
VM frames go the other way on the relay's hot path and are *not* decoded here:
see :mod:`wire.envelope`.

Field names on the wire are camelCase; attributes are snake_case. Decoding is
strict: a wrong type is a :class:`ProtocolError` with ``bad_request``, never a
silent coercion (cattrs would otherwise turn ``"5"`` into ``5``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias, TypeVar

import attrs
import cattrs
import cattrs.v
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from wire.attachments import (
    Attachments,
    AttachmentShapeError,
    structure_attachments,
    unstructure_attachments,
)
from wire.codec import ProtocolError, dumps, loads
from wire.protocol import (
    MAX_SESSION_ID_LENGTH,
    ClientType,
    ErrorCode,
    is_session_id,
    written_session,
)

__all__ = ["ProtocolError", "dumps"]  # re-exported: importers of the codec's old home

T = TypeVar("T")

#: Longest id (workspace, request, clientMessageId) we accept from a peer.
MAX_ID_LENGTH: Final = 200


def _check_id(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise ValueError(
            f"{attribute.name} must be a non-empty string of at most {MAX_ID_LENGTH} characters"
        )


def _check_session(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not is_session_id(value):
        raise ValueError(f"sessionId must be 1 to {MAX_SESSION_ID_LENGTH} characters [A-Za-z0-9_-]")


@attrs.frozen
class Subscribe:
    """Start receiving a workspace (replay after ``last_seq`` or a snapshot)."""

    workspace_id: str = attrs.field(validator=_check_id)
    #: The session it is about (docs/protocol.md, "Sessions"); None means main.
    session_id: str | None = attrs.field(
        default=None, kw_only=True, converter=written_session, validator=_check_session
    )
    last_seq: int | None = None
    epoch: str | None = None
    status_only: bool = False

    def __attrs_post_init__(self) -> None:
        if self.last_seq is not None and self.last_seq < 0:
            raise ValueError("lastSeq must not be negative")


@attrs.frozen
class Unsubscribe:
    """Stop receiving a workspace."""

    workspace_id: str = attrs.field(validator=_check_id)
    #: The session it is about (docs/protocol.md, "Sessions"); None means main.
    session_id: str | None = attrs.field(
        default=None, kw_only=True, converter=written_session, validator=_check_session
    )


@attrs.frozen
class UserMessage:
    """The user sends a message to Claude; ``client_message_id`` makes resends harmless.

    ``attachments``: images and small text files (:mod:`wire.attachments`).
    """

    workspace_id: str = attrs.field(validator=_check_id)
    #: The session it is about (docs/protocol.md, "Sessions"); None means main.
    session_id: str | None = attrs.field(
        default=None, kw_only=True, converter=written_session, validator=_check_session
    )
    client_message_id: str = attrs.field(validator=_check_id)
    text: str
    user_id: str | None = None  # set by relayd from the token, never by a client
    attachments: Attachments = ()


Answer: TypeAlias = str | list[str]


@attrs.frozen
class QuestionResponse:
    """Answers to a ``user_question``, keyed by each question's text."""

    workspace_id: str = attrs.field(validator=_check_id)
    #: The session it is about (docs/protocol.md, "Sessions"); None means main.
    session_id: str | None = attrs.field(
        default=None, kw_only=True, converter=written_session, validator=_check_session
    )
    request_id: str = attrs.field(validator=_check_id)
    answers: dict[str, Answer]
    user_id: str | None = None


@attrs.frozen
class PermissionResponse:
    """Allow or deny a ``permission_request``; ``message`` explains a denial."""

    workspace_id: str = attrs.field(validator=_check_id)
    #: The session it is about (docs/protocol.md, "Sessions"); None means main.
    session_id: str | None = attrs.field(
        default=None, kw_only=True, converter=written_session, validator=_check_session
    )
    request_id: str = attrs.field(validator=_check_id)
    allow: bool
    message: str | None = None
    user_id: str | None = None


@attrs.frozen
class Interrupt:
    """Stop Claude's current turn."""

    workspace_id: str = attrs.field(validator=_check_id)
    #: The session it is about (docs/protocol.md, "Sessions"); None means main.
    session_id: str | None = attrs.field(
        default=None, kw_only=True, converter=written_session, validator=_check_session
    )
    user_id: str | None = None


#: Longest ``op`` name of a ``request``.
MAX_OP_LENGTH: Final = 64


def _check_op(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_OP_LENGTH:
        raise ValueError(f"op must be a non-empty string of at most {MAX_OP_LENGTH} characters")


@attrs.frozen
class Request:
    """Ask the workspace's VM for something (``op`` with ``args``); the ``reply``
    comes to this connection alone, outside the conversation's log.

    ``user_id`` and ``connection_id`` are relayd's: it sets them when it
    forwards the request, and drops a client's own.
    """

    workspace_id: str = attrs.field(validator=_check_id)
    #: The session it is about (docs/protocol.md, "Sessions"); None means main.
    session_id: str | None = attrs.field(
        default=None, kw_only=True, converter=written_session, validator=_check_session
    )
    request_id: str = attrs.field(validator=_check_id)
    op: str = attrs.field(validator=_check_op)
    args: dict[str, Any] = attrs.field(factory=dict)
    user_id: str | None = None
    connection_id: str | None = None


#: Longest ``data`` of one ``terminal_input`` (characters): a paste larger
#: than this is sent in several frames.
MAX_TERMINAL_INPUT: Final = 16 * 1024
#: Largest terminal, in columns and in rows.
MAX_TERMINAL_SIZE: Final = 1000


def _check_input(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or len(value) > MAX_TERMINAL_INPUT:
        raise ValueError(f"data must be a string of at most {MAX_TERMINAL_INPUT} characters")


def _check_size(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or not 1 <= value <= MAX_TERMINAL_SIZE:
        raise ValueError(f"{attribute.name} must be an integer from 1 to {MAX_TERMINAL_SIZE}")


@attrs.frozen
class TerminalInput:
    """Keystrokes (or a paste) for a terminal this connection opened."""

    workspace_id: str = attrs.field(validator=_check_id)
    terminal_id: str = attrs.field(validator=_check_id)
    data: str = attrs.field(validator=_check_input)
    user_id: str | None = None
    connection_id: str | None = None


@attrs.frozen
class TerminalResize:
    """The terminal's new size in character cells."""

    workspace_id: str = attrs.field(validator=_check_id)
    terminal_id: str = attrs.field(validator=_check_id)
    cols: int = attrs.field(validator=_check_size)
    rows: int = attrs.field(validator=_check_size)
    user_id: str | None = None
    connection_id: str | None = None


@attrs.frozen
class TerminalClose:
    """End the terminal (its process group is killed)."""

    workspace_id: str = attrs.field(validator=_check_id)
    terminal_id: str = attrs.field(validator=_check_id)
    user_id: str | None = None
    connection_id: str | None = None


TerminalMessage: TypeAlias = TerminalInput | TerminalResize | TerminalClose


@attrs.frozen
class Auth:
    """Replace the connection's token before it expires."""

    token: str


ClientMessage: TypeAlias = (
    Subscribe
    | Unsubscribe
    | UserMessage
    | QuestionResponse
    | PermissionResponse
    | Interrupt
    | Request
    | Auth
    | TerminalInput
    | TerminalResize
    | TerminalClose
)
ForwardedMessage: TypeAlias = (
    UserMessage
    | QuestionResponse
    | PermissionResponse
    | Interrupt
    | Request
    | TerminalInput
    | TerminalResize
    | TerminalClose
)
#: Fields of a client message that only relayd may set (a client's own are dropped).
SERVER_SET_FIELDS: Final = frozenset({"userId", "connectionId"})

CLIENT_MESSAGE_CLASSES: Final[Mapping[str, type[Any]]] = {
    ClientType.SUBSCRIBE: Subscribe,
    ClientType.UNSUBSCRIBE: Unsubscribe,
    ClientType.USER_MESSAGE: UserMessage,
    ClientType.QUESTION_RESPONSE: QuestionResponse,
    ClientType.PERMISSION_RESPONSE: PermissionResponse,
    ClientType.INTERRUPT: Interrupt,
    ClientType.REQUEST: Request,
    ClientType.AUTH: Auth,
    ClientType.TERMINAL_INPUT: TerminalInput,
    ClientType.TERMINAL_RESIZE: TerminalResize,
    ClientType.TERMINAL_CLOSE: TerminalClose,
}
_TYPE_OF_CLASS: Final = {cls: tag for tag, cls in CLIENT_MESSAGE_CLASSES.items()}

_CAMEL = re.compile(r"_([a-z])")


def camel(name: str) -> str:
    """``workspace_id`` -> ``workspaceId``."""
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


def _strict(kind: type[T]) -> Callable[[object, type[T]], T]:
    def structure(value: object, _type: type[T]) -> T:
        # bool is an int subclass; neither may stand in for the other.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return structure


def _structure_answer(value: object, _type: object) -> Answer:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError("an answer is a string or a list of strings")


def _structure_args(value: object, _type: object) -> dict[str, Any]:
    # ``args`` goes to the VM as it came: a JSON object, checked there by its op.
    if not isinstance(value, dict):
        raise TypeError("args must be a JSON object")
    return value


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    for kind in (str, int, bool):
        conv.register_structure_hook(kind, _strict(kind))
    conv.register_structure_hook(Answer, _structure_answer)
    conv.register_structure_hook_func(lambda t: t == dict[str, Any], _structure_args)
    conv.register_structure_hook_func(lambda t: t == Attachments, structure_attachments)
    conv.register_unstructure_hook_func(lambda t: t == Attachments, unstructure_attachments)
    for cls in CLIENT_MESSAGE_CLASSES.values():
        names: dict[str, Any] = {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **names))
        conv.register_unstructure_hook(
            cls, make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **names)
        )
    return conv


converter: Final = _make_converter()


def decode_client_message(frame: str | bytes, *, trust_user_id: bool = False) -> ClientMessage:
    """Decode one client frame, or raise :class:`ProtocolError`.

    A client cannot choose ``userId`` or ``connectionId``: they are dropped
    unless ``trust_user_id`` (the VM reading a frame that relayd forwarded).
    """
    if isinstance(frame, bytes):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "binary frames are not accepted; send JSON text")
    return structure_client_message(loads(frame), trust_user_id=trust_user_id)


def structure_client_message(obj: object, *, trust_user_id: bool = False) -> ClientMessage:
    """Turn an already parsed JSON value into a client message."""
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame needs a string field 'type'")
    cls = CLIENT_MESSAGE_CLASSES.get(kind)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}")
    if not trust_user_id:
        obj = {k: v for k, v in obj.items() if k not in SERVER_SET_FIELDS}
    try:
        message: ClientMessage = converter.structure(obj, cls)
    except Exception as exc:  # cattrs wraps errors in groups; flatten to one line
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"invalid {kind}: {_describe(exc)}", ref_of(obj)
        ) from None
    return message


def ref_of(obj: Mapping[str, object]) -> str | None:
    """The ``clientMessageId`` or ``requestId`` an ``error`` about ``obj`` refers to."""
    for key in ("clientMessageId", "requestId"):
        value = obj.get(key)
        if isinstance(value, str) and len(value) <= MAX_ID_LENGTH:
            return value
    return None


def _format_error(exc: BaseException, kind: type | None) -> str:
    # Our own hooks' messages already say where and why.
    if isinstance(exc, AttachmentShapeError):
        return str(exc)
    # So do our validators' ValueErrors; cattrs alone would say "invalid value".
    if type(exc) is ValueError and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return cattrs.v.format_exception(exc, kind)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.ClassValidationError):
        return "; ".join(cattrs.transform_error(exc, format_exception=_format_error))[:300]
    return str(exc)[:300] or type(exc).__name__


def message_type(message: ClientMessage) -> str:
    """The wire ``type`` of a message object."""
    return _TYPE_OF_CLASS[type(message)]


def unstructure_message(message: ClientMessage) -> dict[str, Any]:
    """The message as a JSON-ready dict with its ``type``."""
    body: dict[str, Any] = converter.unstructure(message)
    return {"type": message_type(message), **body}


def encode_message(message: ClientMessage) -> str:
    """One JSON text frame for a message object."""
    return dumps(unstructure_message(message))


def error_frame(
    code: ErrorCode,
    message: str,
    *,
    workspace_id: str | None = None,
    ref: str | None = None,
    session_id: str | None = None,
) -> str:
    """An ``error`` message, with optional ``workspaceId``, ``sessionId`` (left out
    for main) and ``ref``."""
    body: dict[str, Any] = {"type": "error"}
    if workspace_id is not None:
        body["workspaceId"] = workspace_id
    if (written := written_session(session_id)) is not None:
        body["sessionId"] = written
    body["code"] = str(code)
    body["message"] = message
    if ref is not None:
        body["ref"] = ref
    return dumps(body)

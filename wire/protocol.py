"""Names of the FF Cloud wire protocol, version 1 (see docs/protocol.md).

Every string here is public API: peers written by others match on them.
"""

from __future__ import annotations

import enum
import re
from typing import Final

SUBPROTOCOL: Final = "ffcloud.v1"
#: Browsers carry their token as an extra offered subprotocol ``bearer.<jwt>``.
BEARER_SUBPROTOCOL_PREFIX: Final = "bearer."
CLIENT_PATH: Final = "/v1/client"
VM_PATH: Final = "/v1/vm"
AUDIENCE: Final = "ffcloud-relay"
DEFAULT_ISSUER: Final = "ffcloud"

#: The first session of every workspace. A message without ``sessionId`` is
#: about it, and writers omit ``sessionId`` for it (docs/protocol.md, "Sessions").
MAIN_SESSION: Final = "main"
#: Longest ``sessionId``.
MAX_SESSION_ID_LENGTH: Final = 64
#: What a ``sessionId`` is made of (anchored with \Z: "$" would let a trailing newline pass).
SESSION_ID_PATTERN: Final = rf"^[A-Za-z0-9_-]{{1,{MAX_SESSION_ID_LENGTH}}}\Z"
_SESSION_ID: Final = re.compile(SESSION_ID_PATTERN)


def is_session_id(value: object) -> bool:
    """True for a valid ``sessionId``: 1 to 64 characters ``[A-Za-z0-9_-]``."""
    return isinstance(value, str) and _SESSION_ID.match(value) is not None


def session_or_main(session_id: str | None) -> str:
    """The session a message is about: its ``sessionId``, or main when it has none."""
    return MAIN_SESSION if session_id is None else session_id


def written_session(session_id: str | None) -> str | None:
    """The ``sessionId`` a writer puts in a frame: None (omitted) for main."""
    return None if session_id == MAIN_SESSION else session_id


class Scope(enum.StrEnum):
    """The ``scope`` claim: which endpoint a token opens."""

    CLIENT = "client"
    VM = "vm"


class CloseCode(enum.IntEnum):
    """WebSocket close codes (docs/protocol.md section 6)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # relayd shutting down
    POLICY = 1008
    TOO_LARGE = 1009
    INTERNAL_ERROR = 1011
    RESTARTING = 1012
    TOKEN_EXPIRED = 4401  # token expired or invalid
    CUT_OFF = 4403  # cut off by the control plane
    MOVED = 4307  # a followed workspace is now served by another node: ask the API where
    TOO_SLOW = 4008  # outgoing queue overflowed


class ErrorCode(enum.StrEnum):
    """``code`` of an ``error`` message."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    VM_OFFLINE = "vm_offline"
    ALREADY_RESOLVED = "already_resolved"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"


class Status(enum.StrEnum):
    """Session status as the VM reports it, plus the relay's ``offline``."""

    STARTING = "starting"
    RUNNING = "running"
    IDLE = "idle"
    WAITING_FOR_INPUT = "waiting_for_input"
    ERROR = "error"
    STOPPED = "stopped"
    OFFLINE = "offline"  # the relay's word: the owning VM is not connected


class Resolution(enum.StrEnum):
    """``resolution`` of a ``request_resolved`` message."""

    ANSWERED = "answered"
    ALLOWED = "allowed"
    DENIED = "denied"
    CANCELLED = "cancelled"


class ClientType(enum.StrEnum):
    """Message types a client sends to the relay."""

    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    USER_MESSAGE = "user_message"
    QUESTION_RESPONSE = "question_response"
    PERMISSION_RESPONSE = "permission_response"
    INTERRUPT = "interrupt"
    REQUEST = "request"
    AUTH = "auth"
    TERMINAL_INPUT = "terminal_input"
    TERMINAL_RESIZE = "terminal_resize"
    TERMINAL_CLOSE = "terminal_close"


class VmType(enum.StrEnum):
    """Message types a VM sends to the relay."""

    HELLO = "hello"
    CLAUDE_MESSAGE = "claude_message"
    USER_MESSAGE = "user_message"
    STATUS = "status"
    USER_QUESTION = "user_question"
    PERMISSION_REQUEST = "permission_request"
    REQUEST_RESOLVED = "request_resolved"
    MESSAGES_SNAPSHOT = "messages_snapshot"
    ERROR = "error"
    REPLY = "reply"
    AUTH = "auth"
    TERMINAL_OUTPUT = "terminal_output"
    TERMINAL_EXIT = "terminal_exit"


class RelayType(enum.StrEnum):
    """Message types the relay itself originates."""

    SUBSCRIBED = "subscribed"
    STATUS = "status"
    ERROR = "error"
    WORKSPACE_ASSIGNED = "workspace_assigned"
    WORKSPACE_RELEASED = "workspace_released"
    SNAPSHOT_REQUEST = "snapshot_request"


#: VM message types that are part of a workspace's log and carry ``seq``/``epoch``.
SEQUENCED_VM_TYPES: Final = frozenset(
    {
        VmType.CLAUDE_MESSAGE,
        VmType.USER_MESSAGE,
        VmType.STATUS,
        VmType.USER_QUESTION,
        VmType.PERMISSION_REQUEST,
        VmType.REQUEST_RESOLVED,
    }
)
#: Client message types that relayd forwards to the owning VM (with ``userId``).
FORWARDED_CLIENT_TYPES: Final = frozenset(
    {
        ClientType.USER_MESSAGE,
        ClientType.QUESTION_RESPONSE,
        ClientType.PERMISSION_RESPONSE,
        ClientType.INTERRUPT,
        ClientType.REQUEST,
        ClientType.TERMINAL_INPUT,
        ClientType.TERMINAL_RESIZE,
        ClientType.TERMINAL_CLOSE,
    }
)
#: The ``op`` of the ``request`` that opens a terminal (its reply books the route).
TERMINAL_OPEN: Final = "terminal_open"
#: Client message types about one terminal (docs/protocol.md, "Terminals"):
#: forwarded only for a terminal that this connection opened.
TERMINAL_CLIENT_TYPES: Final = frozenset(
    {ClientType.TERMINAL_INPUT, ClientType.TERMINAL_RESIZE, ClientType.TERMINAL_CLOSE}
)

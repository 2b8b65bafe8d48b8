"""The routing envelope of VM frames, read without building the whole frame.

relayd forwards VM frames to clients as the text came. All it needs from a
frame is its ``type``, ``workspaceId``, ``sessionId`` (absent for a
workspace's main session), ``seq``, ``epoch`` and ``requestId``. The fast
path (:func:`read_head`) decodes only those with msgspec, which still checks
the whole frame: valid JSON, valid Unicode (no lone surrogate escape), each
field of its type. Its values are the last of a repeated key,
as a browser's ``JSON.parse`` reads them; and the frame must begin with
exactly those fields as :func:`vm_frame` writes them, so a key repeated with
another value further on cannot pass (the first and last would differ).
Anything else takes the slow path, a full parse that refuses a repeated
envelope key outright. Both raise :class:`ProtocolError` for a frame that is
not what it claims, so relayd reads every frame the way every reader does.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

import attrs
import msgspec

from wire.codec import REPEATED_KEY, ProtocolError, dumps, loads_lenient_keys
from wire.protocol import (
    MAX_SESSION_ID_LENGTH,
    SESSION_ID_PATTERN,
    ErrorCode,
    is_session_id,
    written_session,
)

#: Highest ``seq`` a frame may carry: the largest integer a browser reads exactly.
MAX_SEQ: Final = 2**53 - 1
#: The fields relayd routes or checks: none may be repeated.
ENVELOPE_KEYS: Final = frozenset({"type", "workspaceId", "sessionId", "seq", "epoch", "requestId"})
#: What may not follow the envelope: another envelope field.
_ENVELOPE_NEXT: Final = tuple(f',"{key}"' for key in sorted(ENVELOPE_KEYS))

Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
#: A ``sessionId``: it can hold no quote or backslash, so it cannot forge the prefix.
SessionId = Annotated[str, msgspec.Meta(pattern=SESSION_ID_PATTERN)]
#: What :func:`read_head` returns: ``(type, workspaceId, sessionId, seq, epoch, requestId)``.
Head = tuple[str, str | None, str | None, int | None, str | None, str | None]


class _Head(msgspec.Struct, rename="camel"):
    type: str
    workspace_id: str | None = None
    # Its form is checked by read_envelope (a regex here would cost every
    # session's frame on the hot path, where a known room vouches for it).
    session_id: str | None = None
    seq: Seq | None = None
    epoch: str | None = None
    request_id: str | None = None


_decode_head: Final = msgspec.json.Decoder(_Head).decode


@attrs.frozen
class Envelope:
    """What relayd needs to route one VM frame."""

    type: str
    workspace_id: str | None = None
    seq: int | None = None
    epoch: str | None = None
    request_id: str | None = None
    #: As the frame has it: None when it names no session (main), else the
    #: id (``"main"`` itself when a writer spelled it out).
    session_id: str | None = None
    #: The whole decoded frame, when the slow path had to decode it anyway.
    body: dict[str, Any] | None = None


def read_envelope(frame: str) -> Envelope:
    """Read a VM frame's routing fields, or raise :class:`ProtocolError`."""
    head = read_head(frame)
    if head is not None:
        kind, workspace_id, session_id, seq, epoch, request_id = head
        if session_id is not None and not is_session_id(session_id):
            raise _bad_session()
        return Envelope(
            type=kind,
            workspace_id=workspace_id,
            seq=seq,
            epoch=epoch,
            request_id=request_id,
            session_id=session_id,
        )
    return read_envelope_slow(frame)


def read_head(frame: str) -> Head | None:
    """``(type, workspaceId, sessionId, seq, epoch, requestId)`` of a frame written by
    :func:`vm_frame` (envelope first, each field once), or None: then
    :func:`read_envelope_slow` decides. relayd's hot path, without building
    an :class:`Envelope`.

    ``sessionId`` is only known to be a string here: :func:`read_envelope`
    checks its form, and relayd's hot path takes a frame only for a session
    that already has a room (whose id was checked when it was made).
    """
    try:
        h = _decode_head(frame)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None  # the slow path says what is wrong
    kind, workspace_id, session_id, seq, epoch, request_id = (
        h.type,
        h.workspace_id,
        h.session_id,
        h.seq,
        h.epoch,
        h.request_id,
    )
    # The text the values would have been written as, envelope first; its
    # quotes are counted so that an id holding a quote cannot forge it.
    if request_id is None and workspace_id is not None and seq is not None and epoch is not None:
        # The common cases, a log's frame of main or of another session, in one go.
        if session_id is None:
            prefix = (
                f'{{"type":"{kind}","workspaceId":"{workspace_id}","seq":{seq},"epoch":"{epoch}"'
            )
            quotes = 14
        else:
            prefix = (
                f'{{"type":"{kind}","workspaceId":"{workspace_id}","sessionId":"{session_id}",'
                f'"seq":{seq},"epoch":"{epoch}"'
            )
            quotes = 18
    else:
        if (seq is None) != (epoch is None):
            return None
        prefix, quotes = _prefix(kind, workspace_id, session_id, seq, epoch, request_id)
    if not frame.startswith(prefix) or prefix.count('"') != quotes or "\\" in prefix:
        return None
    end = len(prefix)
    after = frame[end]
    if after != "}" and (
        after != ","
        or (not frame.startswith(',"data"', end) and frame.startswith(_ENVELOPE_NEXT, end))
    ):
        return None
    return kind, workspace_id, session_id, seq, epoch, request_id


def _prefix(
    kind: str,
    workspace_id: str | None,
    session_id: str | None,
    seq: int | None,
    epoch: str | None,
    request_id: str | None,
) -> tuple[str, int]:
    """The envelope's text as :func:`vm_frame` writes it, and its count of quotes."""
    prefix = f'{{"type":"{kind}"'
    quotes = 4
    if workspace_id is not None:
        prefix += f',"workspaceId":"{workspace_id}"'
        quotes += 4
    if session_id is not None:
        prefix += f',"sessionId":"{session_id}"'
        quotes += 4
    if seq is not None:
        prefix += f',"seq":{seq},"epoch":"{epoch}"'
        quotes += 6
    if request_id is not None:
        prefix += f',"requestId":"{request_id}"'
        quotes += 4
    return prefix, quotes


def read_envelope_slow(frame: str) -> Envelope:
    """Decode a VM frame whole; a repeated envelope key is refused."""
    obj = loads_lenient_keys(frame)
    repeated = obj.repeated & ENVELOPE_KEYS
    if repeated:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"repeated key {sorted(repeated)[0]!r}", reason=REPEATED_KEY
        )
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame needs a string field 'type'")
    workspace_id = _optional(obj, "workspaceId", str)
    session_id = _optional(obj, "sessionId", str)
    if session_id is not None and not is_session_id(session_id):
        raise _bad_session()
    seq = _optional(obj, "seq", int)
    if isinstance(obj.get("seq"), bool) or (seq is not None and not 0 <= seq <= MAX_SEQ):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'seq' must be an integer from 0 to {MAX_SEQ}")
    return Envelope(
        type=kind,
        workspace_id=workspace_id,
        seq=seq,
        epoch=_optional(obj, "epoch", str),
        request_id=_optional(obj, "requestId", str),
        session_id=session_id,
        body=obj,
    )


def _bad_session() -> ProtocolError:
    return ProtocolError(
        ErrorCode.BAD_REQUEST,
        f"'sessionId' must be 1 to {MAX_SESSION_ID_LENGTH} characters [A-Za-z0-9_-]",
    )


def _optional(obj: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = obj.get(key)
    if value is not None and not isinstance(value, kind):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{key}' must be a {kind.__name__}")
    return value


def vm_frame(
    kind: str,
    workspace_id: str,
    *,
    session_id: str | None = None,
    seq: int | None = None,
    epoch: str | None = None,
    request_id: str | None = None,
    fields: dict[str, Any] | None = None,
    raw_fields: dict[str, str] | None = None,
) -> str:
    """Write a VM frame with the envelope first, as :func:`read_envelope` expects.

    ``session_id`` is written right after ``workspaceId``, and left out for
    None and for main (so main's frames are as they were before sessions).
    ``raw_fields`` are spliced in as given: each value must already be JSON
    text. vmagent uses this to put a Claude Code stream-json line into a
    ``claude_message``'s ``data`` exactly as the CLI printed it.
    """
    head: dict[str, Any] = {"type": kind, "workspaceId": workspace_id}
    session = written_session(session_id)
    if session is not None:
        if not is_session_id(session):
            raise ValueError(f"not a sessionId: {session[:80]!r}")
        head["sessionId"] = session
    if seq is not None:
        if epoch is None:
            raise ValueError("a sequenced frame needs its epoch")
        head["seq"] = seq
        head["epoch"] = epoch
    if request_id is not None:
        head["requestId"] = request_id
    if fields:
        head.update(fields)
    text = dumps(head)
    if raw_fields:
        parts = [text[:-1]]
        for key, raw in raw_fields.items():
            parts.append(f",{json.dumps(key)}:{raw.strip()}")
        parts.append("}")
        text = "".join(parts)
    return text

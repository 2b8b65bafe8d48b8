"""The routing envelope of VM frames, read without decoding the whole frame.

relayd forwards VM frames to clients as the text came. All it needs from a
frame is its ``type``, ``workspaceId``, ``seq``, ``epoch`` and (for snapshots)
``requestId``. vmagent writes those fields first, in a fixed order, with
:func:`vm_frame`, so the relay reads them with one anchored regex over the
frame's head (the ``data`` of a ``claude_message`` can be large). A frame from
any other writer, with fields in another order, still works: it takes the slow
path, a full :func:`json.loads`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import attrs

from wire.messages import ProtocolError, dumps
from wire.protocol import ErrorCode

# Ids written by vmagent never need JSON escapes; a frame whose ids do takes the
# slow path, which decodes them properly.
_HEAD: Final = re.compile(
    r'\{"type":"([a-z_]{1,40})"'
    r'(?:,"workspaceId":"([^"\\]{1,200})"'
    r'(?:,"seq":(0|[1-9][0-9]{0,17}),"epoch":"([^"\\]{1,200})")?'
    r'(?:,"requestId":"([^"\\]{1,200})")?)?'
    # Whatever follows must not be an envelope field that failed to match above
    # (an escaped id, a string seq): such a frame takes the slow path.
    r'(?:\}|,(?!"(?:workspaceId|seq|epoch|requestId)"))'
)


@attrs.frozen
class Envelope:
    """What relayd needs to route one VM frame."""

    type: str
    workspace_id: str | None = None
    seq: int | None = None
    epoch: str | None = None
    request_id: str | None = None
    #: The whole decoded frame, when the slow path had to decode it anyway.
    body: dict[str, Any] | None = None


def read_envelope(frame: str) -> Envelope:
    """Read a VM frame's routing fields, or raise :class:`ProtocolError`.

    The fast path trusts that a frame whose head matches is the JSON object its
    writer meant; the frame comes from an authenticated VM, and the relay does
    not vouch for the rest of it.
    """
    head = read_head(frame)
    if head is not None:
        kind, workspace_id, seq, epoch, request_id = head
        return Envelope(
            type=kind, workspace_id=workspace_id, seq=seq, epoch=epoch, request_id=request_id
        )
    return _read_envelope_slow(frame)


def read_head(frame: str) -> tuple[str, str | None, int | None, str | None, str | None] | None:
    """``(type, workspaceId, seq, epoch, requestId)`` of a frame written by
    :func:`vm_frame` (envelope first), or None: then :func:`read_envelope`
    decodes it. relayd's hot path, without building an :class:`Envelope`."""
    m = _HEAD.match(frame)
    if m is None or not frame.endswith("}"):
        return None
    kind, workspace_id, seq, epoch, request_id = m.groups()
    return kind, workspace_id, int(seq) if seq is not None else None, epoch, request_id


def _read_envelope_slow(frame: str) -> Envelope:
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame needs a string field 'type'")
    workspace_id = _optional(obj, "workspaceId", str)
    seq = _optional(obj, "seq", int)
    if isinstance(obj.get("seq"), bool) or (seq is not None and seq < 0):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'seq' must be a non-negative integer")
    return Envelope(
        type=kind,
        workspace_id=workspace_id,
        seq=seq,
        epoch=_optional(obj, "epoch", str),
        request_id=_optional(obj, "requestId", str),
        body=obj,
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
    seq: int | None = None,
    epoch: str | None = None,
    request_id: str | None = None,
    fields: dict[str, Any] | None = None,
    raw_fields: dict[str, str] | None = None,
) -> str:
    """Write a VM frame with the envelope first, as :func:`read_envelope` expects.

    ``raw_fields`` are spliced in as given: each value must already be JSON
    text. vmagent uses this to put a Claude Code stream-json line into a
    ``claude_message``'s ``data`` exactly as the CLI printed it.
    """
    head: dict[str, Any] = {"type": kind, "workspaceId": workspace_id}
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

"""JSON text in and out, as strict as the protocol requires (see docs/protocol.md).

Reading untrusted text (:func:`loads`): the value must be valid JSON, every
string in it valid Unicode (a lone surrogate escape such as ``\\ud800`` is
refused: UTF-8 cannot carry it, so relayd could not send it on), and no
object may repeat a key (parsers disagree on which one counts: Python and
browsers keep the last, others the first). Every refusal is a
:class:`ProtocolError` with ``bad_request``.

Writing (:func:`dumps`): compact, UTF-8 kept, and always encodable: text
that holds a surrogate anyway is written with ASCII escapes instead, so
encoding a frame never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from wire.protocol import ErrorCode

#: ``reason`` of a frame that is not JSON, or not valid Unicode.
BAD_JSON: Final = "bad_json"
#: ``reason`` of a frame whose object repeats a key.
REPEATED_KEY: Final = "repeated_key"

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class ProtocolError(Exception):
    """A frame that breaks the protocol; becomes an ``error`` message.

    ``reason`` names the kind of fault for the metrics (``bad_json``,
    ``repeated_key``, else the error code).
    """

    def __init__(
        self, code: ErrorCode, message: str, ref: str | None = None, *, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.reason = reason or str(code)


class Obj(dict[str, Any]):
    """A decoded JSON object that remembers which of its keys were repeated."""

    __slots__ = ("repeated",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.repeated: frozenset[str] = frozenset()
        if len(self) != len(pairs):
            seen: set[str] = set()
            repeated: set[str] = set()
            for key, _ in pairs:
                (repeated if key in seen else seen).add(key)
            self.repeated = frozenset(repeated)


def _pairs(pairs: list[tuple[str, Any]]) -> Obj:
    obj = Obj(pairs)
    if obj.repeated:
        raise _Repeated(sorted(obj.repeated)[0])
    return obj


class _Repeated(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def loads(text: str) -> Any:
    """Parse untrusted JSON text, or raise :class:`ProtocolError` (``bad_request``)."""
    try:
        value = json.loads(text, object_pairs_hook=_pairs)
    except _Repeated as exc:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"repeated key {_shown(exc.key)}", reason=REPEATED_KEY
        ) from None
    except (ValueError, RecursionError):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "frame is not valid JSON", reason=BAD_JSON
        ) from None
    # Decoded text has surrogates only where the JSON escaped them (a socket's
    # UTF-8 never yields one), so text without an escape needs no walk.
    if "\\u" in text and has_surrogate(value):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            "invalid Unicode: a lone surrogate escape (\\ud800-\\udfff)",
            reason=BAD_JSON,
        )
    return value


def loads_lenient_keys(text: str) -> Obj:
    """Parse a JSON object whose nested objects may repeat keys; the top-level
    object's repeats are in its ``repeated`` (refusal is the caller's rule).

    Raises :class:`ProtocolError` for anything but valid JSON with valid
    Unicode whose top level is an object.
    """
    try:
        value = json.loads(text, object_pairs_hook=Obj)
    except (ValueError, RecursionError):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "frame is not valid JSON", reason=BAD_JSON
        ) from None
    if not isinstance(value, Obj):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")
    if "\\u" in text and has_surrogate(value):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            "invalid Unicode: a lone surrogate escape (\\ud800-\\udfff)",
            reason=BAD_JSON,
        )
    return value


def has_surrogate(value: object) -> bool:
    """True if any string (or key) in a decoded JSON value holds a surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def dumps(obj: Mapping[str, Any]) -> str:
    """Compact JSON as every service writes it (no spaces, UTF-8 kept).

    Never yields text that UTF-8 cannot encode: a surrogate that reached
    here anyway is written as an ASCII escape.
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii() and _SURROGATE.search(text):
        text = json.dumps(obj, separators=(",", ":"))
    return text


def _shown(key: str) -> str:
    return json.dumps(key[:64])

"""The web app's protocol names (``webui/src/lib/protocol.ts``) agree with ``wire.protocol``.

The TypeScript is read as text: its constants, the ``Status`` and
``Resolution`` unions, the fields of every ``Outgoing`` message, the close
codes it acts on, and the sequenced types the reducer expects. A name changed
on one side only fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import attrs

from controlplane import store
from wire import protocol
from wire.attachments import IMAGE_MEDIA_TYPES
from wire.messages import CLIENT_MESSAGE_CLASSES, SERVER_SET_FIELDS, camel

LIB: Final = Path(__file__).resolve().parents[2] / "webui" / "src" / "lib"
PROTOCOL_TS: Final = (LIB / "protocol.ts").read_text()
#: Fields of client messages that relayd sets itself (from the token).
SERVER_SET: Final = SERVER_SET_FIELDS


def ts_const(name: str, source: str = PROTOCOL_TS) -> str:
    """The value of ``export const NAME = ...;``, as written."""
    match = re.search(rf"^export const {name} = (.+);$", source, re.M)
    assert match, f"{name} not found"
    return match.group(1)


def ts_declaration(head: str, source: str = PROTOCOL_TS) -> str:
    """The text from ``head`` to the ``;`` that ends the declaration."""
    start = source.index(head) + len(head)
    return source[start : source.index(";\n", start)]


def ts_string_union(name: str) -> set[str]:
    """The string literals of ``export type NAME = "a" | "b" ...;``."""
    return set(re.findall(r'"([^"]+)"', ts_declaration(f"export type {name} =")))


def ts_outgoing() -> dict[str, dict[str, bool]]:
    """``Outgoing`` message type -> field name -> whether it is optional."""
    messages: dict[str, dict[str, bool]] = {}
    text = PROTOCOL_TS[PROTOCOL_TS.index("export type Outgoing =") :]
    text = text[: text.index(";\n\n")]
    for body in re.findall(r"\{([^{}]*)\}", text):
        fields = {
            m.group(1): m.group(2) == "?" for m in re.finditer(r"(\w+)(\??):\s*([^;]+)", body)
        }
        tag = re.search(r'type:\s*"(\w+)"', body)
        assert tag, body
        del fields["type"]
        messages[tag.group(1)] = fields
    return messages


def py_fields(cls: type[Any]) -> dict[str, bool]:
    """Wire field name -> whether it is optional, for a client message class."""
    fields: dict[str, bool] = {}
    for field in attrs.fields(cls):
        name = camel(field.name)
        if name not in SERVER_SET:
            fields[name] = field.default is not attrs.NOTHING
    return fields


def test_the_constants_agree() -> None:
    assert ts_const("SUBPROTOCOL") == f'"{protocol.SUBPROTOCOL}"'
    assert ts_const("BEARER_PREFIX") == f'"{protocol.BEARER_SUBPROTOCOL_PREFIX}"'
    assert ts_const("CLIENT_PATH") == f'"{protocol.CLIENT_PATH}"'
    assert ts_const("MAIN_SESSION") == f'"{protocol.MAIN_SESSION}"'
    assert int(ts_const("CLOSE_TOKEN_EXPIRED")) == protocol.CloseCode.TOKEN_EXPIRED
    assert int(ts_const("CLOSE_CUT_OFF")) == protocol.CloseCode.CUT_OFF
    assert int(ts_const("CLOSE_MOVED")) == protocol.CloseCode.MOVED


def test_statuses_are_the_relays_and_the_control_planes() -> None:
    expected = {str(s) for s in protocol.Status} | {store.PROVISIONING, store.DELETED}
    assert ts_string_union("Status") == expected


def test_resolutions_agree() -> None:
    assert ts_string_union("Resolution") == {str(r) for r in protocol.Resolution}


def test_every_client_message_has_the_same_fields() -> None:
    outgoing = ts_outgoing()
    assert set(outgoing) == {str(t) for t in protocol.ClientType}
    for tag, cls in CLIENT_MESSAGE_CLASSES.items():
        assert outgoing[tag] == py_fields(cls), tag


def test_the_reducer_sequences_the_same_types() -> None:
    reducer = (LIB / "conversation.ts").read_text()
    sequenced = set(re.findall(r'"(\w+)"', ts_declaration("const SEQUENCED = new Set(", reducer)))
    assert sequenced == {str(t) for t in protocol.SEQUENCED_VM_TYPES}


def test_the_image_types_agree() -> None:
    listed = re.findall(r'"([^"]+)"', ts_const("IMAGE_MEDIA_TYPES"))
    assert tuple(listed) == IMAGE_MEDIA_TYPES

"""wire.frames: a typed, strict decoder for every message of the protocol."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.codec import ProtocolError
from wire.envelope import MAX_SEQ, vm_frame
from wire.frames import (
    ClaudeMessage,
    ErrorMessage,
    Hello,
    MessagesSnapshot,
    PermissionRequest,
    RelayStatus,
    RequestResolved,
    SnapshotRequest,
    StatusMessage,
    Subscribed,
    UserQuestion,
    VmAuth,
    VmUserMessage,
    WorkspaceAssigned,
    WorkspaceReleased,
    decode_relay_to_client,
    decode_relay_to_vm,
    decode_vm_message,
    encode_frame,
)
from wire.messages import Interrupt, PermissionResponse
from wire.protocol import ErrorCode, Resolution

LOG = {"workspaceId": "w1", "seq": 3, "epoch": "e1"}

#: One valid example of each VM message, and the class it decodes to.
VM_EXAMPLES: list[tuple[dict[str, Any], type[Any]]] = [
    (
        {
            "type": "hello",
            "vmId": "vm1",
            "agentVersion": "1.0",
            "workspaces": [
                {"workspaceId": "w1", "epoch": "e1", "seq": 0},
                {"workspaceId": "w2", "epoch": "e2", "seq": 9, "status": "idle"},
            ],
        },
        Hello,
    ),
    ({"type": "claude_message", **LOG, "data": {"type": "assistant"}}, ClaudeMessage),
    (
        {"type": "user_message", **LOG, "clientMessageId": "c1", "userId": "u1", "text": "hi"},
        VmUserMessage,
    ),
    ({"type": "status", **LOG, "status": "idle", "detail": "done"}, StatusMessage),
    (
        {
            "type": "user_question",
            **LOG,
            "requestId": "q1",
            "questions": [
                {
                    "question": "Which?",
                    "header": "H",
                    "options": [{"label": "A"}],
                    "multiSelect": True,
                }
            ],
        },
        UserQuestion,
    ),
    (
        {
            "type": "permission_request",
            **LOG,
            "requestId": "p1",
            "toolName": "Bash",
            "toolInput": {"command": "ls"},
        },
        PermissionRequest,
    ),
    (
        {"type": "request_resolved", **LOG, "requestId": "p1", "resolution": "allowed"},
        RequestResolved,
    ),
    (
        {
            "type": "messages_snapshot",
            **LOG,
            "requestId": "r1",
            "status": "idle",
            "messages": [],
            "pending": [],
        },
        MessagesSnapshot,
    ),
    ({"type": "error", "code": "not_found", "message": "no", "ref": "p1"}, ErrorMessage),
    ({"type": "auth", "token": "t"}, VmAuth),
]


@pytest.mark.parametrize(("obj", "cls"), VM_EXAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_every_vm_message_decodes_to_its_class(obj: dict[str, Any], cls: type[Any]) -> None:
    message = decode_vm_message(json.dumps(obj))
    assert type(message) is cls
    # Encoding it again gives the same fields (defaults left out).
    assert json.loads(encode_frame(message)) == obj


def test_typed_fields() -> None:
    hello = decode_vm_message(json.dumps(VM_EXAMPLES[0][0]))
    assert isinstance(hello, Hello)
    assert [(e.workspace_id, e.epoch, e.seq, e.status) for e in hello.workspaces] == [
        ("w1", "e1", 0, None),
        ("w2", "e2", 9, "idle"),
    ]
    resolved = decode_vm_message(json.dumps(VM_EXAMPLES[6][0]))
    assert isinstance(resolved, RequestResolved)
    assert resolved.resolution is Resolution.ALLOWED
    error = decode_vm_message(json.dumps(VM_EXAMPLES[8][0]))
    assert isinstance(error, ErrorMessage)
    assert error.code is ErrorCode.NOT_FOUND


def _mutations(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The message with each field in turn of a wrong type, and without it."""
    out: list[dict[str, Any]] = []
    for key, value in obj.items():
        if key == "type":
            continue
        wrong: object = 5 if isinstance(value, str) else "5"
        if isinstance(value, bool):
            wrong = 1
        out.append({**obj, key: wrong})
    return out


@pytest.mark.parametrize(("obj", "cls"), VM_EXAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_a_wrong_type_in_any_field_is_bad_request(obj: dict[str, Any], cls: type[Any]) -> None:
    for mutated in _mutations(obj):
        with pytest.raises(ProtocolError) as caught:
            decode_vm_message(json.dumps(mutated))
        assert caught.value.code == ErrorCode.BAD_REQUEST, mutated
        assert caught.value.message.startswith(f"invalid {obj['type']}: "), caught.value.message


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type":"teleport"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type":5}', ErrorCode.BAD_REQUEST),
        ("[]", ErrorCode.BAD_REQUEST),
        ('{"type":"auth","token":"a","token":"b"}', ErrorCode.BAD_REQUEST),
        ('{"type":"auth","token":"\\ud800"}', ErrorCode.BAD_REQUEST),
        (
            '{"type":"status","workspaceId":"w1","seq":0,"epoch":"e","status":"idle"}',
            ErrorCode.BAD_REQUEST,
        ),
        (
            '{"type":"status","workspaceId":"w1","seq":' + str(MAX_SEQ + 1) + ',"epoch":"e",'
            '"status":"idle"}',
            ErrorCode.BAD_REQUEST,
        ),
        (
            '{"type":"status","workspaceId":"","seq":1,"epoch":"e","status":"idle"}',
            ErrorCode.BAD_REQUEST,
        ),
        ('{"type":"error","code":"made_up","message":"m"}', ErrorCode.BAD_REQUEST),
        (
            '{"type":"request_resolved","workspaceId":"w","seq":1,"epoch":"e","requestId":"r",'
            '"resolution":"maybe"}',
            ErrorCode.BAD_REQUEST,
        ),
        (b"{}", ErrorCode.BAD_REQUEST),
    ],
)
def test_refused_vm_frames(frame: str | bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_vm_message(frame)
    assert caught.value.code == code


def test_relay_to_vm_messages() -> None:
    issue = {"url": "https://github.com/o/r/issues/1", "owner": "o", "repo": "r", "number": 1}
    assigned = decode_relay_to_vm(
        json.dumps({"type": "workspace_assigned", "workspaceId": "w1", "issue": issue})
    )
    assert isinstance(assigned, WorkspaceAssigned)
    assert msgspec.to_builtins(assigned.issue) == issue
    assert decode_relay_to_vm('{"type":"workspace_released","workspaceId":"w1"}') == (
        WorkspaceReleased(workspace_id="w1")
    )
    request = SnapshotRequest(workspace_id="w1", request_id="r1")
    assert decode_relay_to_vm(encode_frame(request)) == request
    # Forwarded client messages keep the userId relayd set.
    assert decode_relay_to_vm('{"type":"interrupt","workspaceId":"w1","userId":"u1"}') == (
        Interrupt(workspace_id="w1", user_id="u1")
    )
    permission = decode_relay_to_vm(
        '{"type":"permission_response","workspaceId":"w1","requestId":"p","allow":false,'
        '"userId":"u1"}'
    )
    assert isinstance(permission, PermissionResponse)
    assert (permission.allow, permission.user_id) == (False, "u1")
    for bad in (
        {"type": "workspace_assigned", "workspaceId": "w1", "issue": {**issue, "number": 0}},
        {"type": "workspace_assigned", "workspaceId": "w1", "issue": {**issue, "url": None}},
        {"type": "workspace_assigned", "workspaceId": "w1"},
        {"type": "snapshot_request", "workspaceId": "w1"},
    ):
        with pytest.raises(ProtocolError) as caught:
            decode_relay_to_vm(json.dumps(bad))
        assert caught.value.code == ErrorCode.BAD_REQUEST, bad
    with pytest.raises(ProtocolError) as caught:
        decode_relay_to_vm('{"type":"hello"}')
    assert caught.value.code == ErrorCode.UNKNOWN_TYPE


def test_relay_to_client_messages() -> None:
    assert decode_relay_to_client(
        '{"type":"subscribed","workspaceId":"w1","epoch":null,"mode":"snapshot"}'
    ) == Subscribed(workspace_id="w1", mode="snapshot", epoch=None)
    # relayd's own status has no seq; the VM's is part of the log.
    assert decode_relay_to_client('{"type":"status","workspaceId":"w1","status":"offline"}') == (
        RelayStatus(workspace_id="w1", status="offline")
    )
    assert isinstance(
        decode_relay_to_client(json.dumps({"type": "status", **LOG, "status": "idle"})),
        StatusMessage,
    )
    assert isinstance(decode_relay_to_client(json.dumps(VM_EXAMPLES[1][0])), ClaudeMessage)
    error = decode_relay_to_client('{"type":"error","code":"rate_limited","message":"slow"}')
    assert isinstance(error, ErrorMessage)
    with pytest.raises(ProtocolError):
        decode_relay_to_client('{"type":"subscribed","workspaceId":"w1","epoch":"e","mode":"x"}')


def test_frames_as_vmagent_writes_them_decode() -> None:
    frame = vm_frame(
        "claude_message", "w1", seq=1, epoch="e1", raw_fields={"data": '{"type":"result"}'}
    )
    message = decode_vm_message(frame)
    assert isinstance(message, ClaudeMessage)
    assert message.data == {"type": "result"}


ids = st.text(min_size=1, max_size=20).filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
)


@given(
    workspace_id=ids,
    epoch=ids,
    seq=st.integers(1, MAX_SEQ),
    request_id=ids,
    resolution=st.sampled_from(list(Resolution)),
    user_id=st.none() | ids,
)
def test_request_resolved_round_trips(
    workspace_id: str,
    epoch: str,
    seq: int,
    request_id: str,
    resolution: Resolution,
    user_id: str | None,
) -> None:
    message = RequestResolved(
        workspace_id=workspace_id,
        seq=seq,
        epoch=epoch,
        request_id=request_id,
        resolution=resolution,
        user_id=user_id,
    )
    assert decode_vm_message(encode_frame(message)) == message

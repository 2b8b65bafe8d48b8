"""Client message codec: strict decoding, camelCase on the wire, clear errors."""

from __future__ import annotations

import attrs
import pytest

from wire.messages import (
    PermissionResponse,
    ProtocolError,
    QuestionResponse,
    Subscribe,
    UserMessage,
    decode_client_message,
    encode_message,
    error_frame,
)
from wire.protocol import ErrorCode


def test_subscribe_round_trip_ignores_unknown_fields() -> None:
    msg = decode_client_message(
        '{"type":"subscribe","workspaceId":"w1","lastSeq":3,"epoch":"e1","future":true}'
    )
    assert msg == Subscribe(workspace_id="w1", last_seq=3, epoch="e1")
    assert encode_message(msg) == '{"type":"subscribe","workspaceId":"w1","lastSeq":3,"epoch":"e1"}'


def test_client_cannot_set_user_id() -> None:
    msg = decode_client_message(
        '{"type":"user_message","workspaceId":"w","clientMessageId":"c","text":"hi","userId":"evil"}'
    )
    assert isinstance(msg, UserMessage)
    assert msg.user_id is None
    forwarded = encode_message(attrs.evolve(msg, user_id="u1"))
    again = decode_client_message(forwarded, trust_user_id=True)
    assert isinstance(again, UserMessage)
    assert again.user_id == "u1"


def test_answers_accept_labels_lists_and_text() -> None:
    msg = decode_client_message(
        '{"type":"question_response","workspaceId":"w","requestId":"r",'
        '"answers":{"Which?":"A","Many?":["x","y"]}}'
    )
    assert isinstance(msg, QuestionResponse)
    assert msg.answers == {"Which?": "A", "Many?": ["x", "y"]}


@pytest.mark.parametrize(
    ("frame", "code", "ref"),
    [
        ("not json", ErrorCode.BAD_REQUEST, None),
        ("[1,2]", ErrorCode.BAD_REQUEST, None),
        ('{"workspaceId":"w"}', ErrorCode.BAD_REQUEST, None),
        ('{"type":"launch_missiles"}', ErrorCode.UNKNOWN_TYPE, None),
        ('{"type":"subscribe","workspaceId":5}', ErrorCode.BAD_REQUEST, None),
        ('{"type":"subscribe","workspaceId":""}', ErrorCode.BAD_REQUEST, None),
        ('{"type":"subscribe","workspaceId":"w","lastSeq":"5"}', ErrorCode.BAD_REQUEST, None),
        ('{"type":"subscribe","workspaceId":"w","lastSeq":-1}', ErrorCode.BAD_REQUEST, None),
        ('{"type":"subscribe","workspaceId":"w","lastSeq":true}', ErrorCode.BAD_REQUEST, None),
        (
            '{"type":"user_message","workspaceId":"w","clientMessageId":"c9"}',
            ErrorCode.BAD_REQUEST,
            "c9",
        ),
        (
            '{"type":"permission_response","workspaceId":"w","requestId":"r1","allow":1}',
            ErrorCode.BAD_REQUEST,
            "r1",
        ),
        (
            '{"type":"question_response","workspaceId":"w","requestId":"r2","answers":{"q":[1]}}',
            ErrorCode.BAD_REQUEST,
            "r2",
        ),
    ],
)
def test_bad_frames_raise_protocol_errors(frame: str, code: ErrorCode, ref: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_client_message(frame)
    assert info.value.code == code
    assert info.value.ref == ref


def test_binary_frames_are_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_client_message(b'{"type":"subscribe"}')
    assert info.value.code == ErrorCode.BAD_REQUEST


def test_permission_response_message_is_optional() -> None:
    msg = decode_client_message(
        '{"type":"permission_response","workspaceId":"w","requestId":"r","allow":false}'
    )
    assert msg == PermissionResponse(workspace_id="w", request_id="r", allow=False)


def test_error_frame_shape() -> None:
    assert error_frame(ErrorCode.NOT_FOUND, "no such workspace", workspace_id="w", ref="r") == (
        '{"type":"error","workspaceId":"w","code":"not_found",'
        '"message":"no such workspace","ref":"r"}'
    )

"""Decoding a ``user_message``'s attachments: strict shapes, exact round trips."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.attachments import IMAGE_MEDIA_TYPES, MAX_ATTACHMENT_NAME, ImageAttachment, TextAttachment
from wire.codec import ProtocolError
from wire.frames import EchoedImage, EchoedText, VmUserMessage, decode_vm_message
from wire.messages import UserMessage, decode_client_message, encode_message
from wire.protocol import ErrorCode


def frame(attachments: Any) -> str:
    return json.dumps(
        {
            "type": "user_message",
            "workspaceId": "w",
            "clientMessageId": "c1",
            "text": "look",
            "attachments": attachments,
        }
    )


def test_an_image_and_a_text_file_decode_and_encode_again() -> None:
    sent = [
        {"type": "image", "mediaType": "image/png", "data": "iVBORw0K", "name": "shot.png"},
        {"type": "image", "mediaType": "image/webp", "data": "UklG"},
        {"type": "text", "name": "notes.txt", "text": "line 1\nline 2"},
    ]
    message = decode_client_message(frame(sent))
    assert isinstance(message, UserMessage)
    assert message.attachments == (
        ImageAttachment("image/png", "iVBORw0K", "shot.png"),
        ImageAttachment("image/webp", "UklG"),
        TextAttachment("notes.txt", "line 1\nline 2"),
    )
    assert json.loads(encode_message(message))["attachments"] == sent


def test_a_message_without_attachments_encodes_without_the_field() -> None:
    message = decode_client_message(
        '{"type":"user_message","workspaceId":"w","clientMessageId":"c1","text":"hi"}'
    )
    assert isinstance(message, UserMessage)
    assert message.attachments == ()
    assert "attachments" not in encode_message(message)


@pytest.mark.parametrize(
    ("attachments", "says"),
    [
        ({"type": "image"}, "attachments must be a JSON array"),
        ("abc", "attachments must be a JSON array"),
        ([1], "attachments[0] must be a JSON object"),
        ([{"type": "pdf", "name": "a"}], "attachments[0].type must be 'image' or 'text'"),
        ([{"type": "image", "data": "AAAA"}], "attachments[0] needs mediaType"),
        ([{"type": "image", "mediaType": "image/bmp", "data": "AAAA"}], "mediaType must be one of"),
        ([{"type": "image", "mediaType": "image/png", "data": 5}], "attachments[0].data must be"),
        ([{"type": "text", "text": "x"}], "attachments[0] needs name"),
        ([{"type": "text", "name": "", "text": "x"}], "name must be a non-empty string"),
        ([{"type": "text", "name": "a\u0007b", "text": "x"}], "without control characters"),
        ([{"type": "text", "name": "n" * (MAX_ATTACHMENT_NAME + 1), "text": "x"}], "name must"),
        ([{"type": "text", "name": "a", "text": ["x"]}], "attachments[0].text must be a string"),
        (
            [{"type": "text", "name": "a", "text": "x"}, {"type": "image", "mediaType": "x"}],
            "attachments[1] needs data",
        ),
    ],
)
def test_wrong_shapes_are_bad_requests_that_say_where(attachments: Any, says: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_client_message(frame(attachments))
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert caught.value.ref == "c1"
    assert says in caught.value.message


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_item = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["image", "text", "other"]) | _json,
        "mediaType": st.sampled_from(IMAGE_MEDIA_TYPES) | _json,
        "data": st.text(max_size=12) | _json,
        "name": st.text(max_size=12) | _json,
        "text": st.text(max_size=12) | _json,
    },
)


def decode_or_refusal(text: str) -> tuple[object, ProtocolError | None]:
    """The decoded message, or the refusal."""
    try:
        return decode_client_message(text), None
    except ProtocolError as exc:
        return None, exc


@given(st.lists(_item | _json, max_size=4) | _json)
def test_any_attachments_value_is_a_round_trip_or_one_clear_bad_request(value: Any) -> None:
    message, refusal = decode_or_refusal(frame(value))
    if refusal is not None:
        assert refusal.code == ErrorCode.BAD_REQUEST
        assert refusal.ref == "c1"
        assert "attachments" in refusal.message
        return
    assert isinstance(message, UserMessage)
    assert isinstance(value, list)
    assert len(message.attachments) == len(value)
    for item, decoded in zip(value, message.attachments, strict=True):
        if isinstance(decoded, ImageAttachment):
            assert item["type"] == "image"
            assert item["mediaType"] in IMAGE_MEDIA_TYPES
        else:
            assert item["type"] == "text"
            assert isinstance(item["text"], str)
            assert item["name"]
    again = decode_client_message(encode_message(message))
    assert again == message


def test_the_echo_decodes_with_sizes_and_omitted_data() -> None:
    echo = decode_vm_message(
        json.dumps(
            {
                "type": "user_message",
                "workspaceId": "w",
                "seq": 3,
                "epoch": "e",
                "clientMessageId": "c1",
                "text": "look",
                "attachments": [
                    {"type": "image", "mediaType": "image/gif", "size": 6, "data": "R0lGODlh"},
                    {"type": "image", "mediaType": "image/png", "size": 9, "omitted": True},
                    {"type": "text", "name": "a.txt", "size": 1, "text": "x"},
                ],
            }
        )
    )
    assert isinstance(echo, VmUserMessage)
    assert echo.attachments == [
        EchoedImage("image/gif", 6, data="R0lGODlh"),
        EchoedImage("image/png", 9, omitted=True),
        EchoedText("a.txt", 1, text="x"),
    ]
    with pytest.raises(ProtocolError):
        decode_vm_message(
            json.dumps(
                {
                    "type": "user_message",
                    "workspaceId": "w",
                    "seq": 3,
                    "epoch": "e",
                    "clientMessageId": "c1",
                    "text": "look",
                    "attachments": [{"type": "image", "mediaType": "image/bmp", "size": 1}],
                }
            )
        )


def test_the_echo_knows_the_same_image_types() -> None:
    hints = typing.get_type_hints(EchoedImage, include_extras=True)
    assert typing.get_args(hints["media_type"]) == IMAGE_MEDIA_TYPES

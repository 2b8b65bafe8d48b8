"""``sessionId`` on the wire: optional everywhere, absent means main, strict when present."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.codec import ProtocolError
from wire.envelope import read_envelope, read_head, vm_frame
from wire.frames import (
    ClaudeMessage,
    ErrorMessage,
    Hello,
    MessagesSnapshot,
    RelayStatus,
    SnapshotRequest,
    StatusMessage,
    Subscribed,
    decode_relay_to_client,
    decode_relay_to_vm,
    decode_vm_message,
    encode_frame,
)
from wire.messages import (
    CLIENT_MESSAGE_CLASSES,
    Interrupt,
    Request,
    Subscribe,
    UserMessage,
    decode_client_message,
    encode_message,
)
from wire.protocol import MAIN_SESSION, ErrorCode, is_session_id, session_or_main

session_ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
#: Ids JSON writes as they are (no quote, backslash or control character to escape).
ids = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"], exclude_characters='"\\'),
    min_size=1,
    max_size=40,
)
#: Strings that are not session ids: empty, too long, or with another character.
bad_session_ids = st.one_of(
    st.just(""),
    st.text(st.sampled_from("ab-_9"), min_size=65, max_size=80),
    st.text(min_size=1, max_size=20).filter(lambda s: not is_session_id(s)),
)
#: Client messages that name a session, with their required fields.
SESSION_MESSAGES: dict[str, dict[str, Any]] = {
    "subscribe": {},
    "unsubscribe": {},
    "user_message": {"clientMessageId": "c1", "text": "hi"},
    "question_response": {"requestId": "q1", "answers": {"Which?": "A"}},
    "permission_response": {"requestId": "p1", "allow": True},
    "interrupt": {},
    "request": {"requestId": "r1", "op": "changes"},
}


def test_the_rule() -> None:
    assert MAIN_SESSION == "main"
    assert session_or_main(None) == "main"
    assert session_or_main("s_1") == "s_1"
    assert is_session_id("s_" + "0" * 32)
    assert is_session_id("a" * 64)
    for bad in ("", "a" * 65, "a b", "a\n", "é", 'a"', None, 5):
        assert not is_session_id(bad), bad


# -- client messages -------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SESSION_MESSAGES))
def test_client_messages_carry_a_session(kind: str) -> None:
    base = {"type": kind, "workspaceId": "w1", **SESSION_MESSAGES[kind]}
    plain = decode_client_message(json.dumps(base))
    assert getattr(plain, "session_id") is None  # noqa: B009 - every class has it
    assert "sessionId" not in json.loads(encode_message(plain))
    named = decode_client_message(json.dumps({**base, "sessionId": "s_ab"}))
    assert getattr(named, "session_id") == "s_ab"  # noqa: B009
    assert json.loads(encode_message(named))["sessionId"] == "s_ab"
    # "main" spelled out is main: re-encoded without it, exactly as the plain one.
    spelled = decode_client_message(json.dumps({**base, "sessionId": "main"}))
    assert spelled == plain
    assert encode_message(spelled) == encode_message(plain)


def test_only_conversation_messages_have_a_session() -> None:
    have = {tag for tag, cls in CLIENT_MESSAGE_CLASSES.items() if "session_id" in cls.__slots__}
    assert have == set(SESSION_MESSAGES)


@given(kind=st.sampled_from(sorted(SESSION_MESSAGES)), bad=bad_session_ids)
def test_a_bad_session_id_is_bad_request(kind: str, bad: str) -> None:
    frame = {"type": kind, "workspaceId": "w1", **SESSION_MESSAGES[kind], "sessionId": bad}
    with pytest.raises(ProtocolError) as caught:
        decode_client_message(json.dumps(frame))
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert "sessionId" in caught.value.message


@pytest.mark.parametrize("bad", [5, True, [], {}])
def test_a_session_id_of_another_type_is_bad_request(bad: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_client_message(
            json.dumps({"type": "interrupt", "workspaceId": "w", "sessionId": bad})
        )
    assert caught.value.code == ErrorCode.BAD_REQUEST


@given(session=session_ids)
def test_forwarded_messages_keep_their_session(session: str) -> None:
    sent = UserMessage(
        workspace_id="w1", session_id=session, client_message_id="c1", text="hi", user_id="u1"
    )
    again = decode_relay_to_vm(encode_message(sent))
    assert again == (sent if session != MAIN_SESSION else UserMessage("w1", "c1", "hi", "u1"))
    request = Request(workspace_id="w1", session_id=session, request_id="r1", op="x")
    assert decode_client_message(encode_message(request)) == request


def test_main_is_written_as_before() -> None:
    assert encode_message(Interrupt(workspace_id="w1")) == '{"type":"interrupt","workspaceId":"w1"}'
    assert encode_message(Subscribe(workspace_id="w1", session_id=MAIN_SESSION, last_seq=2)) == (
        '{"type":"subscribe","workspaceId":"w1","lastSeq":2}'
    )


# -- the envelope ----------------------------------------------------------------


@given(
    kind=st.sampled_from(["claude_message", "status", "messages_snapshot", "error"]),
    workspace_id=ids,
    session=st.none() | session_ids,
    seq=st.none() | st.integers(min_value=0, max_value=10**12),
    epoch=ids,
    request_id=st.none() | ids,
    text=st.text(max_size=30),
)
def test_the_fast_path_reads_the_session(
    kind: str,
    workspace_id: str,
    session: str | None,
    seq: int | None,
    epoch: str,
    request_id: str | None,
    text: str,
) -> None:
    frame = vm_frame(
        kind,
        workspace_id,
        session_id=session,
        seq=seq,
        epoch=epoch if seq is not None else None,
        request_id=request_id,
        raw_fields={"data": json.dumps({"text": text})},
    )
    written = None if session == MAIN_SESSION else session
    body = json.loads(frame)
    assert body.get("sessionId") == written
    envelope = ["type", "workspaceId", *(["sessionId"] if written else [])]
    assert list(body)[: len(envelope)] == envelope
    head = read_head(frame)
    assert head is not None  # as vm_frame writes it: always the fast path
    assert head == (
        kind,
        workspace_id,
        written,
        seq,
        epoch if seq is not None else None,
        request_id,
    )
    env = read_envelope(frame)
    assert env.session_id == written
    assert env.body is None


def test_main_frames_are_byte_identical() -> None:
    frame = vm_frame("claude_message", "w1", seq=3, epoch="e", raw_fields={"data": "{}"})
    assert frame == '{"type":"claude_message","workspaceId":"w1","seq":3,"epoch":"e","data":{}}'
    assert vm_frame("claude_message", "w1", session_id=MAIN_SESSION, seq=3, epoch="e",
                    raw_fields={"data": "{}"}) == frame  # fmt: skip
    assert read_head(frame) == ("claude_message", "w1", None, 3, "e", None)


def test_vm_frame_refuses_a_bad_session() -> None:
    with pytest.raises(ValueError, match="sessionId"):
        vm_frame("status", "w1", session_id="a b", seq=1, epoch="e")


@pytest.mark.parametrize(
    "frame",
    [
        # Not where vm_frame puts it: the full parse reads it the same.
        '{"type":"status","workspaceId":"w","seq":1,"epoch":"e","sessionId":"s1","status":"idle"}',
        '{"sessionId":"s1","type":"status","workspaceId":"w","seq":1,"epoch":"e"}',
    ],
)
def test_another_place_takes_the_slow_path(frame: str) -> None:
    assert read_head(frame) is None
    env = read_envelope(frame)
    assert (env.type, env.workspace_id, env.session_id, env.seq) == ("status", "w", "s1", 1)
    assert env.body is not None


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"status","workspaceId":"w","sessionId":"a b","seq":1,"epoch":"e"}',
        '{"type":"status","workspaceId":"w","sessionId":"","seq":1,"epoch":"e"}',
        '{"type":"status","workspaceId":"w","sessionId":7,"seq":1,"epoch":"e"}',
        '{"type":"status","workspaceId":"w","sessionId":"' + "a" * 65 + '","seq":1,"epoch":"e"}',
        # A repeated sessionId could be read two ways: refused.
        '{"type":"status","workspaceId":"w","sessionId":"a","seq":1,"epoch":"e","sessionId":"b"}',
        '{"type":"status","workspaceId":"w","sessionId":"a","sessionId":"a","seq":1,"epoch":"e"}',
    ],
)
def test_bad_session_ids_in_vm_frames_are_refused(frame: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        read_envelope(frame)
    assert caught.value.code == ErrorCode.BAD_REQUEST


# -- typed frames ----------------------------------------------------------------


def test_vm_frames_decode_their_session() -> None:
    log = {"workspaceId": "w1", "sessionId": "s_1", "seq": 3, "epoch": "e"}
    claude = decode_vm_message(json.dumps({"type": "claude_message", **log, "data": {}}))
    assert isinstance(claude, ClaudeMessage)
    assert claude.session_id == "s_1"
    status = decode_vm_message(json.dumps({"type": "status", **log, "status": "idle"}))
    assert isinstance(status, StatusMessage)
    assert status.session_id == "s_1"
    snapshot = decode_vm_message(
        json.dumps(
            {
                "type": "messages_snapshot",
                **log,
                "requestId": "r",
                "status": "idle",
                "messages": [],
                "pending": [],
            }
        )
    )
    assert isinstance(snapshot, MessagesSnapshot)
    assert snapshot.session_id == "s_1"
    error = decode_vm_message(
        '{"type":"error","workspaceId":"w1","sessionId":"s_1","code":"bad_request","message":"m"}'
    )
    assert isinstance(error, ErrorMessage)
    assert error.session_id == "s_1"
    plain = decode_vm_message(
        '{"type":"status","workspaceId":"w1","seq":1,"epoch":"e","status":"x"}'
    )
    assert isinstance(plain, StatusMessage)
    assert plain.session_id is None


def test_hello_lists_one_entry_per_session_log() -> None:
    hello = decode_vm_message(
        json.dumps(
            {
                "type": "hello",
                "vmId": "vm1",
                "workspaces": [
                    {"workspaceId": "w1", "epoch": "e1", "seq": 4, "status": "idle"},
                    {"workspaceId": "w1", "sessionId": "s_2", "epoch": "e2", "seq": 0},
                ],
            }
        )
    )
    assert isinstance(hello, Hello)
    assert [(e.workspace_id, e.session_id, e.seq) for e in hello.workspaces] == [
        ("w1", None, 4),
        ("w1", "s_2", 0),
    ]


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, 3])
def test_a_bad_session_in_a_typed_frame_is_bad_request(bad: object) -> None:
    log = {"workspaceId": "w", "sessionId": bad, "seq": 1, "epoch": "e"}
    frames = [
        {"type": "status", **log, "status": "x"},
        {"type": "hello", "workspaces": [log]},
    ]
    for frame in frames:
        with pytest.raises(ProtocolError) as caught:
            decode_vm_message(json.dumps(frame))
        assert caught.value.code == ErrorCode.BAD_REQUEST


def test_relay_frames_write_the_session_after_the_workspace() -> None:
    request = SnapshotRequest(workspace_id="w1", session_id="s_1", request_id="r1")
    assert encode_frame(request) == (
        '{"type":"snapshot_request","workspaceId":"w1","sessionId":"s_1","requestId":"r1"}'
    )
    assert decode_relay_to_vm(encode_frame(request)) == request
    main = SnapshotRequest(workspace_id="w1", request_id="r1")
    assert encode_frame(main) == '{"type":"snapshot_request","workspaceId":"w1","requestId":"r1"}'
    subscribed = decode_relay_to_client(
        '{"type":"subscribed","workspaceId":"w1","sessionId":"s_1","epoch":null,"mode":"snapshot"}'
    )
    assert subscribed == Subscribed(
        workspace_id="w1", session_id="s_1", epoch=None, mode="snapshot"
    )
    status = decode_relay_to_client(
        '{"type":"status","workspaceId":"w1","sessionId":"s_1","status":"offline"}'
    )
    assert status == RelayStatus(workspace_id="w1", session_id="s_1", status="offline")

"""The conversation state machine, without sockets or files."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vmagent.conversation import PERMISSION, QUESTION, Conversation, CorruptLog, Out
from wire.envelope import read_envelope
from wire.messages import PermissionResponse, QuestionResponse, UserMessage


def bodies(outs: list[Out]) -> list[dict[str, Any]]:
    return [json.loads(o.frame) for o in outs]


def log_lines(conv: Conversation, outs_seq: list[list[Out]]) -> list[str]:
    lines = [conv.header().frame + "\n"]
    for outs in outs_seq:
        lines.extend(o.frame + "\n" for o in outs if o.log)
    return lines


def stream_line(event: dict[str, Any], parent: str | None = None) -> str:
    return json.dumps(
        {"type": "stream_event", "event": event, "session_id": "s1", "parent_tool_use_id": parent}
    )


def assistant_line(msg_id: str, text: str) -> str:
    return json.dumps(
        {
            "type": "assistant",
            "message": {
                "id": msg_id,
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
            },
            "session_id": "s1",
            "parent_tool_use_id": None,
        }
    )


def test_user_message_accepted_once_per_client_id() -> None:
    conv = Conversation("ws1", "e1")
    ok, outs = conv.accept_user_message(UserMessage("ws1", "c1", "hi", "u1"))
    assert ok
    [out] = outs
    assert out.log
    assert out.sync
    body = json.loads(out.frame)
    assert body == {
        "type": "user_message",
        "workspaceId": "ws1",
        "seq": 1,
        "epoch": "e1",
        "clientMessageId": "c1",
        "userId": "u1",
        "text": "hi",
    }
    ok, outs = conv.accept_user_message(UserMessage("ws1", "c1", "hi again", "u1"))
    assert not ok
    [err] = bodies(outs)
    assert not outs[0].log
    assert err["type"] == "error"
    assert err["code"] == "bad_request"
    assert err["ref"] == "c1"
    assert "seq 1" in err["message"]
    assert conv.seq == 1


def test_frames_put_the_envelope_first() -> None:
    conv = Conversation("ws1", "e1")
    conv.accept_user_message(UserMessage("ws1", "c1", "hi"))
    [out] = conv.claude_line('{"type":"system","subtype":"init","session_id":"abc"}')[1:]
    env = read_envelope(out.frame)
    assert (env.type, env.workspace_id, env.seq, env.epoch, env.body) == (
        "claude_message",
        "ws1",
        2,
        "e1",
        None,  # the fast path read it
    )


def test_claude_line_is_spliced_verbatim_and_session_id_kept() -> None:
    conv = Conversation("ws1", "e1")
    line = '{"type": "system",  "subtype":"init", "session_id": "abc", "x": 1.50}'
    outs = conv.claude_line(line)
    assert [json.loads(o.frame)["type"] for o in outs] == ["_session", "claude_message"]
    assert outs[0].sync
    assert outs[0].log
    assert outs[1].frame.endswith(',"data":' + line + "}")
    assert conv.session_id == "abc"
    # The same session id again is not logged twice.
    assert len(conv.claude_line(line)) == 1


def test_status_reported_only_on_change() -> None:
    conv = Conversation("ws1", "e1")
    [out] = conv.set_status("starting")
    assert json.loads(out.frame)["status"] == "starting"
    assert conv.set_status("starting") == []
    [out] = conv.set_status("error", "clone failed")
    assert json.loads(out.frame)["detail"] == "clone failed"
    assert conv.status == "error"
    assert conv.status_detail == "clone failed"


def test_first_answer_wins_and_later_ones_get_errors() -> None:
    conv = Conversation("ws1", "e1")
    questions = [{"question": "Color?", "options": [{"label": "red"}], "multiSelect": False}]
    rid, outs = conv.open_request(QUESTION, {"questions": questions})
    assert [b["type"] for b in bodies(outs)] == ["user_question", "status"]
    assert bodies(outs)[0]["requestId"] == rid
    assert bodies(outs)[1]["status"] == "waiting_for_input"
    assert set(conv.pending) == {rid}

    # A permission answer to a question is refused and changes nothing.
    pending, outs = conv.answer_permission(PermissionResponse("ws1", rid, True, None, "u1"))
    assert pending is None
    assert bodies(outs)[0]["code"] == "bad_request"
    assert rid in conv.pending

    pending, outs = conv.answer_question(QuestionResponse("ws1", rid, {"Color?": "red"}, "u2"))
    assert pending is not None
    assert pending.kind == QUESTION
    [resolved] = bodies(outs)
    assert resolved["type"] == "request_resolved"
    assert resolved["resolution"] == "answered"
    assert resolved["userId"] == "u2"
    assert outs[0].sync
    assert conv.pending == {}

    pending, outs = conv.answer_question(QuestionResponse("ws1", rid, {"Color?": "red"}, "u3"))
    assert pending is None
    [err] = bodies(outs)
    assert err["code"] == "already_resolved"
    assert err["ref"] == rid
    assert not outs[0].log

    pending, outs = conv.answer_question(QuestionResponse("ws1", "nope", {}, "u3"))
    assert bodies(outs)[0]["code"] == "not_found"


def test_permission_denied_and_cancel_pending() -> None:
    conv = Conversation("ws1", "e1")
    rid, _ = conv.open_request(PERMISSION, {"toolName": "Bash", "toolInput": {"command": "x"}})
    _, outs = conv.answer_permission(PermissionResponse("ws1", rid, False, "no", "u1"))
    assert bodies(outs)[0]["resolution"] == "denied"
    rid2, _ = conv.open_request(PERMISSION, {"toolName": "Bash", "toolInput": {}})
    [out] = conv.cancel_pending()
    assert json.loads(out.frame)["resolution"] == "cancelled"
    assert json.loads(out.frame)["requestId"] == rid2
    assert conv.cancel_pending() == []


def test_snapshot_compacts_finished_messages_only() -> None:
    conv = Conversation("ws1", "e1")
    conv.set_status("idle")
    conv.accept_user_message(UserMessage("ws1", "c1", "hi", "u1"))
    conv.set_status("running")
    start = {"type": "message_start", "message": {"id": "m1"}}
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "x"},
    }
    conv.claude_line(stream_line(start))
    conv.claude_line(stream_line(delta))
    conv.claude_line(stream_line({"type": "content_block_stop", "index": 0}))
    conv.claude_line(assistant_line("m1", "x"))
    # m1 has its assistant line but has not stopped: its deltas stay.
    snap = json.loads(conv.snapshot("r1"))
    kinds = [
        m["data"]["type"] if m["type"] == "claude_message" else m["type"] for m in snap["messages"]
    ]
    assert kinds.count("stream_event") == 3
    conv.claude_line(stream_line({"type": "message_stop"}))
    # A second message still streaming keeps its deltas.
    conv.claude_line(stream_line({"type": "message_start", "message": {"id": "m2"}}))
    conv.claude_line(stream_line(delta))
    rid, _ = conv.open_request(PERMISSION, {"toolName": "Bash", "toolInput": {}})

    raw = conv.snapshot("r2")
    env = read_envelope(raw)
    assert (env.type, env.seq, env.epoch, env.request_id) == (
        "messages_snapshot",
        conv.seq,
        "e1",
        "r2",
    )
    snap = json.loads(raw)
    assert snap["status"] == "waiting_for_input"
    seqs = [m["seq"] for m in snap["messages"]]
    assert seqs == sorted(seqs)
    assert seqs[-1] == conv.seq
    streamed = [
        m["data"]["event"]["type"]
        for m in snap["messages"]
        if m["type"] == "claude_message" and m["data"]["type"] == "stream_event"
    ]
    assert streamed == ["message_start", "content_block_delta"]  # m2's, not m1's
    assert any(
        m["type"] == "claude_message" and m["data"]["type"] == "assistant" for m in snap["messages"]
    )
    assert [p["requestId"] for p in snap["pending"]] == [rid]
    assert snap["pending"][0]["type"] == "permission_request"
    # Messages in the snapshot are exactly the frames that went out.
    assert snap["messages"][0] == {
        "type": "status",
        "workspaceId": "ws1",
        "seq": 1,
        "epoch": "e1",
        "status": "idle",
    }


def test_result_finishes_an_unstopped_message() -> None:
    conv = Conversation("ws1", "e1")
    conv.claude_line(stream_line({"type": "message_start", "message": {"id": "m1"}}))
    conv.claude_line(assistant_line("m1", "partial"))
    conv.claude_line(json.dumps({"type": "result", "subtype": "error_during_execution"}))
    snap = json.loads(conv.snapshot("r"))
    assert [m["data"]["type"] for m in snap["messages"]] == ["assistant", "result"]


def test_empty_snapshot() -> None:
    snap = json.loads(Conversation("ws1", "e1").snapshot("r"))
    assert snap["seq"] == 0
    assert snap["messages"] == []
    assert snap["pending"] == []
    assert snap["status"] == "starting"


def test_restore_rebuilds_everything() -> None:
    conv = Conversation("ws1", "e1")
    history: list[list[Out]] = []
    history.append(
        [o for o in [conv.assign({"url": "u", "owner": "o", "repo": "r", "number": 1})] if o]
    )
    history.append(conv.set_status("idle"))
    history.append(conv.accept_user_message(UserMessage("ws1", "c1", "hi", "u1"))[1])
    history.append(conv.claude_line('{"type":"system","subtype":"init","session_id":"abc"}'))
    history.append(
        conv.claude_line(stream_line({"type": "message_start", "message": {"id": "m1"}}))
    )
    history.append(conv.claude_line(assistant_line("m1", "done")))
    history.append(conv.claude_line(stream_line({"type": "message_stop"})))
    rid, outs = conv.open_request(QUESTION, {"questions": []})
    history.append(outs)
    rid2, outs = conv.open_request(PERMISSION, {"toolName": "T", "toolInput": {}})
    history.append(outs)
    history.append(conv.resolve(rid2, "allowed", "u1"))

    again = Conversation.restore("ws1", log_lines(conv, history))
    assert again.snapshot("r") == conv.snapshot("r")
    assert (again.seq, again.epoch, again.session_id, again.issue) == (
        conv.seq,
        "e1",
        "abc",
        {"url": "u", "owner": "o", "repo": "r", "number": 1},
    )
    assert set(again.pending) == {rid}
    ok, _ = again.accept_user_message(UserMessage("ws1", "c1", "resent"))
    assert not ok
    _, outs = again.answer_permission(PermissionResponse("ws1", rid2, True))
    assert bodies(outs)[0]["code"] == "already_resolved"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda lines: [*lines[:-1], lines[-1].rstrip("\n")],  # cut short
        lambda lines: [*lines[:2], "{not json\n", *lines[2:]],
        lambda lines: lines[1:],  # no header
        lambda lines: lines[:1] + lines[2:],  # a gap in seq
        lambda lines: [],
        lambda lines: [*lines, "[1]\n"],
    ],
)
def test_restore_refuses_a_damaged_log(mutate: Any) -> None:
    conv = Conversation("ws1", "e1")
    history = [conv.set_status("idle"), conv.set_status("running"), conv.set_status("idle")]
    lines = log_lines(conv, history)
    Conversation.restore("ws1", lines)  # the undamaged log reads back
    with pytest.raises(CorruptLog):
        Conversation.restore("ws1", mutate(lines))


def test_restore_refuses_another_workspaces_log() -> None:
    conv = Conversation("ws1", "e1")
    with pytest.raises(CorruptLog):
        Conversation.restore("ws2", log_lines(conv, [conv.set_status("idle")]))


def test_unstarted_messages_survive_restore() -> None:
    conv = Conversation("ws1", "e1")
    history: list[list[Out]] = []
    for cid in ("c1", "c2", "c3"):
        history.append(conv.accept_user_message(UserMessage("ws1", cid, f"text {cid}"))[1])
    assert conv.unstarted() == [
        ("c1", "text c1", ()),
        ("c2", "text c2", ()),
        ("c3", "text c3", ()),
    ]
    turn = conv.start_turn("c1")
    assert turn.sync
    assert turn.log
    history.append([turn])
    assert [cid for cid, _, _ in conv.unstarted()] == ["c2", "c3"]
    again = Conversation.restore("ws1", log_lines(conv, history))
    assert again.unstarted() == [("c2", "text c2", ()), ("c3", "text c3", ())]

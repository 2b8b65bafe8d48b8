"""Fuzzing the conversation with what the Claude CLI could print, and the log it writes.

The CLI's stream-json lines carry text the model, tools and files shaped:
Hypothesis sends :meth:`~vmagent.conversation.Conversation.claude_line`
objects of the CLI's shapes with odd values (lone surrogate escapes, as a
JavaScript string cut inside a pair is printed; wrong types; huge numbers),
mixed with status changes and requests. What must hold:

* every frame encodes as UTF-8 (the log file and the socket both encode it)
  and is a JSON object with the workspace's next seq;
* the log restores to the same seq, status and session, and a snapshot of
  either is the same.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmagent.conversation import PERMISSION, QUESTION, Conversation, Out
from wire.protocol import Status

odd_text = st.text(max_size=12) | st.sampled_from(["\ud83d", "a\ude00b", "", "\x00", "\u2028"])
values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=6,
)
message_ids = st.sampled_from(["m1", "m2"]) | values


@st.composite
def claude_lines(draw: st.DrawFn) -> str:
    """One stream-json object as the CLI prints it (escapes as JSON.stringify writes them)."""
    kind = draw(st.sampled_from(["stream_event", "assistant", "result", "system", "user"]) | values)
    body: dict[str, Any] = {"type": kind}
    if kind == "stream_event":
        event_type = draw(
            st.sampled_from(["message_start", "content_block_delta", "message_stop"]) | values
        )
        body["event"] = draw(
            st.just({"type": event_type, "message": {"id": draw(message_ids)}}) | values
        )
        body["api_message_id"] = draw(message_ids)
    elif kind == "assistant":
        body["message"] = draw(st.just({"id": draw(message_ids), "content": draw(values)}) | values)
    elif kind == "system":
        body.update(subtype="init", session_id=draw(st.just("s1") | values))
    body["parent_tool_use_id"] = draw(st.none() | st.just("t1") | values)
    if draw(st.booleans()):
        body[draw(odd_text)] = draw(values)
    # ensure_ascii: a lone surrogate is written as an escape, as JSON.stringify does.
    return json.dumps(body)


steps = st.one_of(
    claude_lines().map(lambda line: ("claude", line)),
    st.tuples(
        st.just("status"), st.sampled_from([Status.RUNNING, Status.IDLE]), st.none() | odd_text
    ),
    st.tuples(st.just("request"), st.sampled_from([QUESTION, PERMISSION]), values),
)


def run(conv: Conversation, step: tuple[Any, ...]) -> list[Out]:
    if step[0] == "claude":
        return conv.claude_line(step[1])
    if step[0] == "status":
        return conv.set_status(step[1], step[2])
    fields = step[2] if isinstance(step[2], dict) else {"input": step[2]}
    return conv.open_request(step[1], {str(k): v for k, v in fields.items()})[1]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, max_size=12))
def test_any_cli_output_makes_frames_and_a_log_that_restores(batch: list[Any]) -> None:
    conv = Conversation("ws1")
    lines = [conv.header().frame + "\n"]
    for step in batch:
        seq = conv.seq
        for out in run(conv, step):
            body = json.loads(out.frame.encode("utf-8"))  # what the log and the socket do
            assert isinstance(body, dict)
            if isinstance(body.get("seq"), int):
                seq += 1
                assert body["seq"] == seq
                assert body["workspaceId"] == "ws1"
            if out.log:
                lines.append(out.frame + "\n")
        assert conv.seq == seq
    restored = Conversation.restore("ws1", lines)
    assert (restored.seq, restored.status, restored.session_id) == (
        conv.seq,
        conv.status,
        conv.session_id,
    )
    assert restored.snapshot("r") == conv.snapshot("r")
    conv.snapshot("r").encode("utf-8")

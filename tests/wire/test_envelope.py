"""The relay's envelope fast path agrees with a full decode."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.envelope import read_envelope, vm_frame
from wire.messages import ProtocolError

ids = st.text(st.characters(codec="utf-8", exclude_characters='"\\'), min_size=1, max_size=40)


@given(
    kind=st.sampled_from(["claude_message", "status", "messages_snapshot", "user_question"]),
    workspace_id=ids,
    seq=st.integers(min_value=0, max_value=10**12),
    epoch=ids,
    request_id=st.none() | ids,
    text=st.text(max_size=50),
)
def test_fast_path_matches_full_decode(
    kind: str, workspace_id: str, seq: int, epoch: str, request_id: str | None, text: str
) -> None:
    data = json.dumps({"type": "assistant", "text": text})
    frame = vm_frame(
        kind, workspace_id, seq=seq, epoch=epoch, request_id=request_id, raw_fields={"data": data}
    )
    body = json.loads(frame)  # the spliced frame is valid JSON
    assert body["data"] == json.loads(data)
    env = read_envelope(frame)
    assert (env.type, env.workspace_id, env.seq, env.epoch, env.request_id) == (
        kind,
        workspace_id,
        seq,
        epoch,
        request_id,
    )


def test_other_field_order_takes_the_slow_path() -> None:
    env = read_envelope('{"seq":7,"epoch":"e","workspaceId":"w","type":"status","status":"idle"}')
    assert (env.type, env.workspace_id, env.seq, env.epoch) == ("status", "w", 7, "e")
    assert env.body is not None


@pytest.mark.parametrize(
    "frame",
    ["", "nope", "[]", '{"type":3}', '{"type":"status","seq":"1"}', '{"type":"status","seq":true}'],
)
def test_bad_vm_frames(frame: str) -> None:
    with pytest.raises(ProtocolError):
        read_envelope(frame)

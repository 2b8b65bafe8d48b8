"""examples/client.py: how it renders the protocol's messages.

The run against the real services is in test_client_example_live.py.
"""

from __future__ import annotations

from examples.client import render


def _delta(text: str) -> dict[str, object]:
    return {
        "type": "claude_message",
        "workspaceId": "w",
        "seq": 3,
        "epoch": "e",
        "data": {
            "type": "stream_event",
            "event": {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            },
        },
    }


ASSISTANT = {
    "type": "claude_message",
    "workspaceId": "w",
    "seq": 4,
    "epoch": "e",
    "data": {
        "type": "assistant",
        "message": {
            "content": [
                {"type": "text", "text": "Hello there"},
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
            ]
        },
    },
}


def test_live_text_streams_and_the_whole_message_is_not_repeated() -> None:
    assert render(_delta("Hel")) == "Hel"
    assert render(ASSISTANT) is None


def test_snapshot_prints_finished_messages_whole() -> None:
    snapshot = {
        "type": "messages_snapshot",
        "workspaceId": "w",
        "seq": 5,
        "epoch": "e",
        "requestId": "r",
        "status": "waiting_for_input",
        "messages": [
            {"type": "user_message", "workspaceId": "w", "seq": 1, "text": "hi"},
            ASSISTANT,
            _delta("still stream"),
        ],
        "pending": [
            {
                "type": "permission_request",
                "workspaceId": "w",
                "seq": 5,
                "requestId": "p1",
                "toolName": "Bash",
                "toolInput": {"command": "rm -rf build"},
            }
        ],
    }
    assert render(snapshot) == (
        "# snapshot up to seq 5: 3 messages, status waiting_for_input\n"
        "> hi\n"
        "Hello there\n[tool Bash]\n"
        "still stream"
        '[permission p1] Bash {"command": "rm -rf build"}\n'
    )


def test_turn_end_status_and_errors() -> None:
    result = {
        "type": "claude_message",
        "data": {"type": "result", "duration_ms": 1200, "total_cost_usd": 0.0123},
    }
    assert render(result) == "[turn done: 1200 ms, $0.0123]\n"
    assert render({"type": "status", "status": "offline"}) == "[status] offline\n"
    assert (
        render({"type": "error", "code": "vm_offline", "message": "the VM is not connected"})
        == "[error] vm_offline: the VM is not connected\n"
    )
    assert render({"type": "something_new"}) is None

"""examples/client.py: how it renders the protocol's messages and renews its token.

The run against the real services, behind nginx, is in test_stack.py.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import httpx
import trio
import trio.testing
from trio_websocket import WebSocketConnection

from examples.client import RENEW_MARGIN, Session, keep_token_fresh, render


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


async def test_token_is_renewed_before_it_expires(autojump_clock: trio.testing.MockClock) -> None:
    """A minute before expiry: refresh over HTTP, then ``auth`` on the open socket."""
    refreshed: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        refreshed.append(request.url.path)
        return httpx.Response(
            200,
            json={
                "accessToken": "new-token",
                "expiresAt": "2099-01-01T00:00:00Z",
                "user": {"id": "u1", "username": "alice"},
            },
        )

    sent: list[dict[str, Any]] = []

    class FakeSocket:
        async def send_message(self, message: str) -> None:
            sent.append(json.loads(message))

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="http://cp.invalid"
    ) as http:
        session = Session(http, "old-token", time.time() + RENEW_MARGIN + 5)
        # The next renewal is decades away: the test's deadline ends the loop.
        with trio.move_on_after(3600):
            await keep_token_fresh(session, cast(WebSocketConnection, FakeSocket()))
    assert refreshed == ["/api/auth/refresh"]
    assert sent == [{"type": "auth", "token": "new-token"}]
    assert session.token == "new-token"

"""Claude Code stream-json lines, built by hand (for the demo engine).

The shapes follow what Claude Code prints with ``--output-format stream-json
--verbose --include-partial-messages``: ``system``/``init``; ``stream_event``
wrapping the Messages API's streaming events; one ``assistant`` line per
finished content block carrying the whole message so far; ``user`` lines
with tool results; and a final ``result`` with duration, cost and usage. The
web UI thus renders the demo and the real engine with one code path.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from wire.messages import dumps


def _uuid() -> str:
    return str(uuid.uuid4())


def message_id() -> str:
    """An Anthropic-style message id."""
    return "msg_demo_" + uuid.uuid4().hex[:20]


def tool_use_id() -> str:
    """An Anthropic-style tool_use id."""
    return "toolu_demo_" + uuid.uuid4().hex[:20]


class LineWriter:
    """Builds the lines of one session (``session_id`` stamped on each)."""

    def __init__(
        self,
        session_id: str,
        model: str,
        cwd: str,
        tools: list[str],
        *,
        context_window: int | None = None,
    ) -> None:
        self.session_id = session_id
        self.model = model
        self.permission_mode = "default"
        self.cwd = cwd
        self.tools = tools
        #: The model's context window, reported in ``result``'s ``modelUsage`` as Claude Code does.
        self.context_window = context_window
        #: The prompt's size, reported in each ``assistant`` line's ``usage`` (the context in use).
        self.context_tokens = 0
        #: The names the ``init`` line lists as ``slash_commands``.
        self.slash_commands: list[str] = []
        self._message_id: str | None = None

    def _line(self, body: dict[str, Any]) -> str:
        return dumps(body)

    def init(self) -> str:
        """``system``/``init``, printed at the start of each turn."""
        return self._line(
            {
                "type": "system",
                "subtype": "init",
                "cwd": self.cwd,
                "session_id": self.session_id,
                "tools": self.tools,
                "mcp_servers": [],
                "model": self.model,
                "permissionMode": self.permission_mode,
                "slash_commands": self.slash_commands,
                "apiKeySource": "none",
                "output_style": "default",
                "agents": [],
                "skills": [],
                "plugins": [],
                "uuid": _uuid(),
            }
        )

    def event(self, event: dict[str, Any]) -> str:
        """A ``stream_event`` wrapping one Messages API streaming event."""
        if event.get("type") == "message_start":
            self._message_id = event["message"]["id"]
        body: dict[str, Any] = {
            "type": "stream_event",
            "event": event,
            "session_id": self.session_id,
            "parent_tool_use_id": None,
            "uuid": _uuid(),
        }
        if self._message_id is not None:
            body["api_message_id"] = self._message_id
        return self._line(body)

    def message_start(self, msg_id: str, input_tokens: int) -> str:
        """``message_start`` of a new assistant message."""
        return self.event(
            {
                "type": "message_start",
                "message": {
                    "model": self.model,
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage(input_tokens, 1),
                },
            }
        )

    def assistant(
        self,
        msg_id: str,
        content: list[dict[str, Any]],
        output_tokens: int,
        *,
        aborted: bool = False,
    ) -> str:
        """The ``assistant`` line for a finished (or, ``aborted``, interrupted) block."""
        body: dict[str, Any] = {
            "type": "assistant",
            "message": {
                "model": self.model,
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "content": content,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage(self.context_tokens, output_tokens),
            },
            "parent_tool_use_id": None,
            "session_id": self.session_id,
            "uuid": _uuid(),
        }
        if aborted:
            body["aborted"] = True
        return self._line(body)

    def tool_result(self, tool_id: str, content: str, *, is_error: bool) -> str:
        """A ``user`` line carrying a tool's result."""
        return self._line(
            {
                "type": "user",
                "message": {
                    "role": "user",
                    "content": [
                        {
                            "tool_use_id": tool_id,
                            "type": "tool_result",
                            "content": content,
                            "is_error": is_error,
                        }
                    ],
                },
                "parent_tool_use_id": None,
                "session_id": self.session_id,
                "uuid": _uuid(),
            }
        )

    def user_text(self, text: str) -> str:
        """A ``user`` line with plain text (as Claude Code prints after an interrupt)."""
        return self._line(
            {
                "type": "user",
                "message": {"role": "user", "content": [{"type": "text", "text": text}]},
                "parent_tool_use_id": None,
                "session_id": self.session_id,
                "uuid": _uuid(),
            }
        )

    def result(
        self,
        *,
        subtype: str,
        is_error: bool,
        duration_ms: int,
        num_turns: int,
        result: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
    ) -> str:
        """The ``result`` line that ends a turn."""
        body: dict[str, Any] = {
            "type": "result",
            "subtype": subtype,
            "is_error": is_error,
            "duration_ms": duration_ms,
            "duration_api_ms": duration_ms,
            "num_turns": num_turns,
            "result": result,
            "stop_reason": "end_turn" if not is_error else None,
            "session_id": self.session_id,
            "total_cost_usd": cost_usd,
            "usage": usage(input_tokens, output_tokens),
            "modelUsage": self._model_usage(input_tokens, output_tokens, cost_usd),
            "permission_denials": [],
            "uuid": _uuid(),
        }
        return self._line(body)

    def _model_usage(self, input_tokens: int, output_tokens: int, cost: float) -> dict[str, Any]:
        if self.context_window is None:
            return {}
        return {
            self.model: {
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "cacheReadInputTokens": 0,
                "cacheCreationInputTokens": 0,
                "costUSD": cost,
                "contextWindow": self.context_window,
            }
        }


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """A Messages API ``usage`` object."""
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def input_json(value: dict[str, Any]) -> str:
    """A tool input as the JSON text ``input_json_delta`` streams."""
    return json.dumps(value, separators=(",", ":"))

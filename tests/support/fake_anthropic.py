"""A fake Anthropic Messages API on loopback, scripted per test.

Point the Claude Code CLI at it with ``ANTHROPIC_BASE_URL=fake.url`` and any
``ANTHROPIC_API_KEY``. ``POST /v1/messages`` requests that carry tools (the
conversation's own requests) take the next scripted :class:`Reply` and get it
as a Server-Sent Events stream, exactly as the real API streams; every other
request (token counts, titles, the CLI's side queries) gets a short generic
answer. Every request body is recorded in ``requests`` so a test can check
what reached the model (tool results, answers).

    async with trio.open_nursery() as nursery:
        fake = await nursery.start(FakeAnthropic().run)
        fake.push(Reply([text("Hello!")]))
        ...
        assert fake.conversation[0]["messages"][-1]["role"] == "user"
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import h11
import trio

log = logging.getLogger("tests.fake_anthropic")

MODEL = "claude-fake-1"
_ids = itertools.count(1)


@attrs.frozen
class Block:
    """One content block of a scripted reply: text, thinking or tool_use."""

    kind: str  # "text", "thinking" or "tool_use"
    text: str = ""
    name: str = ""
    input: dict[str, Any] = attrs.field(factory=dict)
    id: str = ""
    # How many pieces the text (or the tool input JSON) streams in.
    chunks: int = 3


def text(value: str, chunks: int = 3) -> Block:
    """A text block streamed in ``chunks`` deltas."""
    return Block("text", text=value, chunks=chunks)


def thinking(value: str) -> Block:
    """A thinking block."""
    return Block("thinking", text=value)


def tool_use(name: str, tool_input: dict[str, Any], tool_id: str | None = None) -> Block:
    """A tool_use block; its input streams as input_json_delta pieces."""
    return Block(
        "tool_use", name=name, input=tool_input, id=tool_id or f"toolu_fake_{next(_ids):04d}"
    )


@attrs.frozen
class Reply:
    """A scripted assistant message: its blocks, the stop reason, and pacing."""

    blocks: list[Block]
    stop_reason: str | None = None  # default: tool_use if any block is one, else end_turn
    #: Seconds to wait before each delta (a long, slow stream to interrupt).
    delay: float = 0.0


#: A reply made from the request it answers (the text a test needs is only in
#: the request, such as the plan file path plan mode's reminder names).
Respond = Callable[[dict[str, Any]], Reply]


def _split(value: str, parts: int) -> list[str]:
    if not value:
        return [""]
    size = max(1, -(-len(value) // max(1, parts)))
    return [value[i : i + size] for i in range(0, len(value), size)]


def sse_events(reply: Reply, msg_id: str) -> list[tuple[str, dict[str, Any], float]]:
    """The stream of (event name, data, delay before it) for one reply."""
    events: list[tuple[str, dict[str, Any], float]] = []
    usage = {
        "input_tokens": 25,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 1,
    }
    events.append(
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": MODEL,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage,
                },
            },
            0.0,
        )
    )
    output_tokens = 1
    for index, block in enumerate(reply.blocks):
        if block.kind == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _split(block.text, block.chunks)]
        elif block.kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": p} for p in _split(block.text, block.chunks)
            ]
            deltas.append({"type": "signature_delta", "signature": "fake-signature"})
        else:
            start = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
            raw = json.dumps(block.input)
            deltas = [
                {"type": "input_json_delta", "partial_json": p} for p in _split(raw, block.chunks)
            ]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
                0.0,
            )
        )
        for delta in deltas:
            output_tokens += 1
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    reply.delay,
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}, 0.0))
    stop = reply.stop_reason or (
        "tool_use" if any(b.kind == "tool_use" for b in reply.blocks) else "end_turn"
    )
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
            0.0,
        )
    )
    events.append(("message_stop", {"type": "message_stop"}, 0.0))
    return events


def _complete_message(reply: Reply, msg_id: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for b in reply.blocks:
        if b.kind == "text":
            content.append({"type": "text", "text": b.text})
        elif b.kind == "thinking":
            content.append({"type": "thinking", "thinking": b.text, "signature": "fake-signature"})
        else:
            content.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 5},
    }


class FakeAnthropic:
    """The fake API server; ``push`` scripts replies, ``requests`` records bodies."""

    def __init__(self) -> None:
        self.port = 0
        self._script: deque[Reply | Respond] = deque()
        #: Every request: (method, path, parsed JSON body or None).
        self.requests: list[tuple[str, str, Any]] = []
        #: Bodies of the conversation's own requests (those that took a scripted reply).
        self.conversation: list[dict[str, Any]] = []
        self._changed = trio.Event()
        #: Set when a scripted stream was cut off by the client (an interrupt).
        self.disconnects = 0

    @property
    def url(self) -> str:
        """The base URL for ``ANTHROPIC_BASE_URL``."""
        return f"http://127.0.0.1:{self.port}"

    def push(self, *replies: Reply | Respond) -> None:
        """Queue replies for the next conversation requests, in order; a callable
        is called with the request's body when that request comes."""
        self._script.extend(replies)

    async def wait_for_conversation(self, count: int) -> dict[str, Any]:
        """Wait until ``count`` conversation requests arrived; return the last of them."""
        while len(self.conversation) < count:
            await self._changed.wait()
        return self.conversation[count - 1]

    async def run(
        self, *, task_status: trio.TaskStatus[FakeAnthropic] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve on a free loopback port until cancelled."""
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, self._serve, 0, host="127.0.0.1")
            )
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started(self)

    def _note(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, stream)
                if request is None:
                    return
                await self._respond(conn, stream, request, body)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data and conn.their_state is not h11.DONE:
                    return None, b""
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, event: Any) -> None:
        data = conn.send(event)
        if data:
            await stream.send_all(data)

    async def _json(
        self, conn: h11.Connection, stream: trio.SocketStream, status: int, body: Any
    ) -> None:
        raw = json.dumps(body).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(raw)))]
        await self._send(conn, stream, h11.Response(status_code=status, headers=headers))
        await self._send(conn, stream, h11.Data(data=raw))
        await self._send(conn, stream, h11.EndOfMessage())

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request, raw: bytes
    ) -> None:
        method = request.method.decode()
        path = request.target.decode().split("?", 1)[0]
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append((method, path, body))
        self._note()
        if method != "POST" or not path.startswith("/v1/messages"):
            await self._json(
                conn,
                stream,
                404,
                {"type": "error", "error": {"type": "not_found_error", "message": "no such route"}},
            )
            return
        if path.endswith("/count_tokens"):
            await self._json(conn, stream, 200, {"input_tokens": 42})
            return
        is_conversation = isinstance(body, dict) and bool(body.get("tools")) and bool(self._script)
        msg_id = f"msg_fake_{next(_ids):04d}"
        if is_conversation:
            assert isinstance(body, dict)
            scripted = self._script.popleft()
            reply = scripted if isinstance(scripted, Reply) else scripted(body)
            self.conversation.append(body)
            self._note()
        else:
            reply = Reply([text("OK")])
        if not (isinstance(body, dict) and body.get("stream")):
            await self._json(conn, stream, 200, _complete_message(reply, msg_id))
            return
        headers = [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
            ("request-id", f"req_fake_{next(_ids)}"),
        ]
        await self._send(conn, stream, h11.Response(status_code=200, headers=headers))
        try:
            for name, data, delay in sse_events(reply, msg_id):
                if delay:
                    await trio.sleep(delay)
                chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                await self._send(conn, stream, h11.Data(data=chunk))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.disconnects += 1
            self._note()
            raise
        await self._send(conn, stream, h11.EndOfMessage())

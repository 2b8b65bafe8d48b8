"""A minimal relay for vmagent tests: accepts /v1/vm connections on loopback.

It checks nothing itself; it records what the agent offered (path, headers,
subprotocols) and hands each accepted connection to the test.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from vmagent.agent import Agent, AgentSettings
from vmagent.engines.base import Engine
from vmagent.workdir import WorkdirPlan
from wire.protocol import SUBPROTOCOL

ISSUE = {"url": "https://github.com/o/r/issues/7", "owner": "o", "repo": "r", "number": 7}


def agent_for(
    relay: FakeRelay,
    tmp_path: Path,
    engine: Engine,
    token: str = "tok.en.x",
    plan: WorkdirPlan | None = None,
) -> Agent:
    """An agent that dials ``relay`` with ``token``, state under ``tmp_path``, fast backoff
    (no clone unless ``plan`` says otherwise)."""
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    return Agent(
        AgentSettings(
            relay_url=relay.url,
            token_file=token_file,
            state_dir=tmp_path / "state",
            plan=plan or WorkdirPlan(clone=False),
            backoff_initial=0.01,
            backoff_max=0.05,
        ),
        engine,
    )


@attrs.define
class VmConn:
    """One accepted VM connection, seen from the relay's side."""

    ws: WebSocketConnection
    path: str
    headers: dict[str, str]
    subprotocols: tuple[str, ...]
    done: trio.Event = attrs.Factory(trio.Event)

    async def recv(self) -> dict[str, Any]:
        """The next frame, decoded."""
        frame = await self.ws.get_message()
        assert isinstance(frame, str)
        body: dict[str, Any] = json.loads(frame)
        return body

    async def recv_raw(self) -> str:
        frame = await self.ws.get_message()
        assert isinstance(frame, str)
        return frame

    async def send(self, body: dict[str, Any] | str) -> None:
        await self.ws.send_message(body if isinstance(body, str) else json.dumps(body))

    async def until(self, kind: str, **match: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Read frames until one of ``kind`` whose fields match; return it and those before."""
        seen: list[dict[str, Any]] = []
        while True:
            body = await self.recv()
            if body.get("type") == kind and all(body.get(k) == v for k, v in match.items()):
                return body, seen
            seen.append(body)

    async def close(self) -> None:
        await self.ws.aclose()
        self.done.set()


class FakeRelay:
    """Serve /v1/vm on a free loopback port; ``accept()`` yields each connection."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[VmConn](8)
        self.port = 0

    async def run(
        self, *, task_status: trio.TaskStatus[FakeRelay] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, self._handler, "127.0.0.1", 0, None)
            self.port = server.port
            task_status.started(self)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _handler(self, request: WebSocketRequest) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        conn = VmConn(ws, request.path, headers, request.proposed_subprotocols)
        await self._send.send(conn)
        with contextlib.suppress(ConnectionClosed):
            await conn.done.wait()

    async def accept(self) -> VmConn:
        return await self._receive.receive()


async def assign(conn: VmConn, workspace_id: str = "ws1") -> None:
    await conn.send({"type": "workspace_assigned", "workspaceId": workspace_id, "issue": ISSUE})
    await conn.until("status", workspaceId=workspace_id, status="idle")


async def say(conn: VmConn, text: str, cid: str, ws: str = "ws1") -> dict[str, Any]:
    await conn.send(
        {
            "type": "user_message",
            "workspaceId": ws,
            "clientMessageId": cid,
            "text": text,
            "userId": "u1",
        }
    )
    echo, _ = await conn.until("user_message", clientMessageId=cid)
    return echo


async def turn_frames(conn: VmConn) -> list[dict[str, Any]]:
    """Frames up to and including the turn's result."""
    frames = []
    while True:
        body = await conn.recv()
        frames.append(body)
        if body["type"] == "claude_message" and body["data"]["type"] == "result":
            return frames


async def snapshot(conn: VmConn, ws: str = "ws1") -> dict[str, Any]:
    await conn.send({"type": "snapshot_request", "workspaceId": ws, "requestId": "snap"})
    snap, _ = await conn.until("messages_snapshot", requestId="snap")
    return snap

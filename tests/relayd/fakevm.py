"""A scripted fake VM over a real WebSocket, for relayd's tests."""

from __future__ import annotations

import json
from typing import Any

from trio_websocket import WebSocketConnection

from tests.support.relayd import recv_json, send_json
from wire.envelope import vm_frame
from wire.protocol import MAIN_SESSION


def log_key(workspace_id: str, session: str | None) -> str:
    """Where a session's seq and epoch are kept: main's under the workspace's id."""
    return workspace_id if session in (None, MAIN_SESSION) else f"{workspace_id}/{session}"


class FakeVm:
    """Speaks the VM side of the protocol with frames written like vmagent's."""

    def __init__(self, ws: WebSocketConnection, vm_id: str) -> None:
        self.ws = ws
        self.vm_id = vm_id
        self.seq: dict[str, int] = {}
        self.epoch: dict[str, str] = {}

    async def hello(self, **logs: tuple[str, int]) -> None:
        """``hello`` with ``workspace=(epoch, seq)`` for each log the VM holds."""
        await self.hello_with_statuses({}, logs)

    async def hello_with_statuses(
        self, statuses: dict[str, str], logs: dict[str, tuple[str, int]]
    ) -> None:
        """``hello`` whose entries also carry vmagent's ``status`` where ``statuses`` names one."""
        entries: list[dict[str, Any]] = []
        for ws, (epoch, seq) in logs.items():
            self.epoch[ws], self.seq[ws] = epoch, seq
            entries.append({"workspaceId": ws, "epoch": epoch, "seq": seq})
            if ws in statuses:
                entries[-1]["status"] = statuses[ws]
        await send_json(
            self.ws,
            {"type": "hello", "vmId": self.vm_id, "agentVersion": "fake", "workspaces": entries},
        )

    async def hello_sessions(
        self,
        logs: dict[tuple[str, str], tuple[str, int]],
        statuses: dict[tuple[str, str], str] | None = None,
    ) -> None:
        """``hello`` with one entry per (workspace, session) log, as vmagent lists them."""
        entries: list[dict[str, Any]] = []
        for (ws, session), (epoch, seq) in logs.items():
            key = log_key(ws, session)
            self.epoch[key], self.seq[key] = epoch, seq
            entry: dict[str, Any] = {"workspaceId": ws}
            if session != MAIN_SESSION:
                entry["sessionId"] = session
            entry |= {"epoch": epoch, "seq": seq}
            if statuses and (ws, session) in statuses:
                entry["status"] = statuses[ws, session]
            entries.append(entry)
        await send_json(
            self.ws,
            {"type": "hello", "vmId": self.vm_id, "agentVersion": "fake", "workspaces": entries},
        )

    def _next(self, workspace_id: str, session: str | None) -> tuple[int, str]:
        key = log_key(workspace_id, session)
        seq = self.seq.get(key, 0) + 1
        self.seq[key] = seq
        return seq, self.epoch.setdefault(key, "e1")

    def frame(self, workspace_id: str, text: str = "x", *, session: str | None = None) -> str:
        """The next ``claude_message`` of a workspace's session (its seq is taken)."""
        seq, epoch = self._next(workspace_id, session)
        data = json.dumps({"type": "assistant", "text": text})
        return vm_frame(
            "claude_message",
            workspace_id,
            session_id=session,
            seq=seq,
            epoch=epoch,
            raw_fields={"data": data},
        )

    async def stream(
        self, workspace_id: str, count: int, text: str = "x", *, session: str | None = None
    ) -> None:
        """Send ``count`` claude_messages."""
        for _ in range(count):
            await self.ws.send_message(self.frame(workspace_id, text, session=session))

    def status_frame(self, workspace_id: str, status: str, *, session: str | None = None) -> str:
        """The next sequenced ``status`` (its seq is taken)."""
        seq, epoch = self._next(workspace_id, session)
        return vm_frame(
            "status",
            workspace_id,
            session_id=session,
            seq=seq,
            epoch=epoch,
            fields={"status": status},
        )

    async def status(self, workspace_id: str, status: str, *, session: str | None = None) -> None:
        """Send a sequenced ``status``."""
        await self.ws.send_message(self.status_frame(workspace_id, status, session=session))

    async def snapshot(
        self, workspace_id: str, request_id: str, *, session: str | None = None, **extra: Any
    ) -> None:
        """Answer a snapshot_request with the VM's current seq (no messages kept)."""
        key = log_key(workspace_id, session)
        await self.ws.send_message(
            vm_frame(
                "messages_snapshot",
                workspace_id,
                session_id=session,
                seq=self.seq.get(key, 0),
                epoch=self.epoch.setdefault(key, "e1"),
                request_id=request_id,
                fields={"status": "idle", "messages": [], "pending": [], **extra},
            )
        )

    async def recv(self) -> dict[str, Any]:
        """The next frame relayd sent this VM."""
        return await recv_json(self.ws)

    async def expect(self, kind: str) -> dict[str, Any]:
        """Skip frames until one of this type."""
        while True:
            obj = await self.recv()
            if obj["type"] == kind:
                return obj

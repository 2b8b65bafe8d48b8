"""A scripted fake VM over a real WebSocket, for relayd's tests."""

from __future__ import annotations

import json
from typing import Any

from trio_websocket import WebSocketConnection

from tests.support.relayd import recv_json, send_json
from wire.envelope import vm_frame


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

    def frame(self, workspace_id: str, text: str = "x") -> str:
        """The next ``claude_message`` of a workspace (its seq is taken)."""
        seq = self.seq.get(workspace_id, 0) + 1
        self.seq[workspace_id] = seq
        data = json.dumps({"type": "assistant", "text": text})
        return vm_frame(
            "claude_message",
            workspace_id,
            seq=seq,
            epoch=self.epoch.setdefault(workspace_id, "e1"),
            raw_fields={"data": data},
        )

    async def stream(self, workspace_id: str, count: int, text: str = "x") -> None:
        """Send ``count`` claude_messages."""
        for _ in range(count):
            await self.ws.send_message(self.frame(workspace_id, text))

    async def status(self, workspace_id: str, status: str) -> None:
        """Send a sequenced ``status``."""
        seq = self.seq.get(workspace_id, 0) + 1
        self.seq[workspace_id] = seq
        await self.ws.send_message(
            vm_frame(
                "status",
                workspace_id,
                seq=seq,
                epoch=self.epoch.setdefault(workspace_id, "e1"),
                fields={"status": status},
            )
        )

    async def snapshot(self, workspace_id: str, request_id: str, **extra: Any) -> None:
        """Answer a snapshot_request with the VM's current seq (no messages kept)."""
        await self.ws.send_message(
            vm_frame(
                "messages_snapshot",
                workspace_id,
                seq=self.seq.get(workspace_id, 0),
                epoch=self.epoch.setdefault(workspace_id, "e1"),
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

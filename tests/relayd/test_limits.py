"""Limits end to end: frame sizes, rates, connection counts, keepalive.

Slow and stalled readers: tests/relayd/test_slow_readers.py.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import trio
import wsproto
import wsproto.events
from trio_websocket import ConnectionRejected

from tests.support.relayd import close_code, recv_json, send_json, start_relayd
from wire.protocol import CLIENT_PATH, SUBPROTOCOL


async def test_oversized_frames_close_with_1009(tmp_path: Path) -> None:
    args = ["--max-client-frame", "1000", "--max-vm-frame", "5000"]
    async with start_relayd(tmp_path, args=args) as relay:
        with trio.fail_after(20):
            async with relay.connect_client("u1") as ws:
                await ws.send_message(json.dumps({"type": "subscribe", "workspaceId": "x" * 900}))
                assert (await recv_json(ws))["type"] == "error"  # under the limit: an answer
                await ws.send_message("x" * 1001)
                assert await close_code(ws) == 1009
            async with relay.connect_vm("vm1") as ws:
                await ws.send_message("y" * 4000)  # under the VM limit: an error, still open
                assert (await recv_json(ws))["code"] == "bad_request"
                await ws.send_message("y" * 5001)
                assert await close_code(ws) == 1009


async def test_rate_limit_answers_rate_limited_and_keeps_the_connection(tmp_path: Path) -> None:
    async with start_relayd(
        tmp_path, args=["--client-rate", "0.5", "--client-burst", "3"]
    ) as relay:
        with trio.fail_after(20):
            async with relay.connect_client("u1") as ws:
                for _ in range(5):
                    await send_json(ws, {"type": "subscribe", "workspaceId": "w"})
                codes = [(await recv_json(ws))["code"] for _ in range(5)]
                assert codes == ["not_found"] * 3 + ["rate_limited"] * 2
                stats = await relay.control.request("stats")
                assert stats["drops"]["rateLimited"] == 2


async def test_connections_per_user(tmp_path: Path) -> None:
    async with start_relayd(tmp_path, args=["--max-connections-per-user", "2"]) as relay:
        with trio.fail_after(20):
            async with relay.connect_client("u1"), relay.connect_client("u1"):
                with pytest.raises(ConnectionRejected) as refused:
                    async with relay.connect_client("u1"):
                        pass
                assert refused.value.status_code == 429
                async with relay.connect_client("u2") as other:
                    await send_json(other, {"type": "subscribe", "workspaceId": "w"})
                    assert (await recv_json(other))["code"] == "not_found"
            # Closed connections no longer count.
            async with relay.connect_client("u1"), relay.connect_client("u1"):
                pass


@pytest.mark.parametrize("answered", [0, 4])
async def test_keepalive_closes_a_peer_that_misses_two_pings(tmp_path: Path, answered: int) -> None:
    async with start_relayd(tmp_path, args=["--ping-interval", "0.1"]) as relay:
        with trio.fail_after(20):
            events = await _raw_peer(
                relay.host, relay.port, relay.client_token("u1"), answer_pings=answered
            )
    kinds = [type(e).__name__ for e in events]
    # Every answered ping kept the peer open; the two after them did not.
    assert kinds.count("Ping") >= answered + 2
    close = events[-1]
    assert isinstance(close, wsproto.events.CloseConnection)
    assert close.code == 1008


async def _raw_peer(
    host: str, port: int, token: str, *, answer_pings: int
) -> list[wsproto.events.Event]:
    """Open a WebSocket by hand, answer the first ``answer_pings`` pings and no more.

    Returns what relayd sent until it closed the connection.
    """
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await sock.connect((host, port))
    conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await sock.send(
        conn.send(
            wsproto.events.Request(
                host=host,
                target=CLIENT_PATH,
                subprotocols=[SUBPROTOCOL],
                extra_headers=[(b"Authorization", f"Bearer {token}".encode())],
            )
        )
    )
    events: list[wsproto.events.Event] = []
    while True:
        data = await sock.recv(65536)
        if not data:
            break
        conn.receive_data(data)
        for event in conn.events():
            events.append(event)
            if isinstance(event, wsproto.events.CloseConnection):
                sock.close()
                return events
            if isinstance(event, wsproto.events.Ping) and answer_pings > 0:
                answer_pings -= 1
                await sock.send(conn.send(event.response()))
    sock.close()
    return events

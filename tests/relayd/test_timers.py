"""The process-wide timer heap, and what it lets an idle connection shed.

The heap is checked with trio's autojump clock; the writer that comes and
goes with a real relayd in this process (its connections over loopback).
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from trio_websocket import open_websocket

import relayd.peer
from relayd.relay import Relay
from relayd.server import handle_connection
from relayd.settings import Settings
from relayd.timers import TimerHandle, Timers
from tests.support.keys import KeyRing
from tests.support.relayd import recv_json, send_json
from wire.protocol import CLIENT_PATH, SUBPROTOCOL
from wire.tokens import TokenVerifier


class Owner:
    """Calls back at the times in ``plan``, in turn, noting when it was called."""

    def __init__(self, plan: list[float]) -> None:
        self.plan = plan
        self.calls: list[float] = []

    def on_timer(self, now: float) -> float:
        self.calls.append(now)
        return self.plan.pop(0) if self.plan else math.inf


async def test_timers_fire_in_order_move_and_forget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers = Timers()
    early, late, gone = Owner([3.0]), Owner([]), Owner([])
    handles = [TimerHandle(o) for o in (early, late, gone)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        timers.schedule(handles[0], 1.0)
        timers.schedule(handles[1], 5.0)
        timers.schedule(handles[2], 2.0)
        timers.cancel(handles[2])
        await trio.sleep(0.5)
        timers.earlier(handles[1], 4.0)  # moved earlier: the 5.0 entry is stale
        timers.earlier(handles[1], 4.5)  # not earlier: ignored
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert early.calls == [1.0, 3.0]  # called again at the time it returned
    assert late.calls == [4.0]
    assert gone.calls == []


@pytest.fixture
async def in_process() -> AsyncIterator[tuple[Relay, KeyRing, int]]:
    """relayd's connection handling and timers in this process, on a loopback port."""
    keys = KeyRing()
    verifier = TokenVerifier.from_jwks(keys.jwks(), issuer=keys.issuer)
    relay = Relay(Settings(ping_interval=0.2), verifier)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay.timers.run)
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"),
            functools.partial(handle_connection, relay),
            0,
        )
        yield relay, keys, listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def test_an_idle_client_sheds_its_writer_and_keeps_its_pings(
    in_process: tuple[Relay, KeyRing, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relayd.peer, "WRITER_LINGER", 0.1)
    relay, keys, port = in_process
    headers = [(b"Authorization", f"Bearer {keys.client_token('u1')}".encode())]
    with trio.fail_after(10):
        async with open_websocket(
            "127.0.0.1",
            port,
            CLIENT_PATH,
            use_ssl=False,
            subprotocols=[SUBPROTOCOL],
            extra_headers=headers,
        ) as ws:
            await trio.testing.wait_all_tasks_blocked()
            (peer,) = relay.clients_by_user["u1"]
            assert not peer._writing  # nothing sent yet: no writer task
            await send_json(ws, {"type": "subscribe", "workspaceId": "nope"})
            assert (await recv_json(ws))["code"] == "not_found"
            # A second later (five ping intervals, answered by trio-websocket)
            # the writer has gone: it only came back for each ping.
            await trio.sleep(1.0)
            await trio.testing.wait_all_tasks_blocked()
            assert ws.closed is None
            assert peer.frames_out == 1
            assert not peer._writing
            assert peer.ws._ping_id >= 3
            await send_json(ws, {"type": "subscribe", "workspaceId": "nope2"})
            assert (await recv_json(ws))["workspaceId"] == "nope2"  # a new writer sent it

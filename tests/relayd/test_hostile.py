"""relayd against hostile peers: no frame ends the process or reaches the wrong workspace.

Each test is one way a signed-in client or a connected VM tried to break
relayd; after each, relayd must still answer and route for everyone else.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import trio

from relayd.relay import Relay
from relayd.server import handle_connection
from relayd.settings import Settings
from tests.relayd.fakevm import FakeVm
from tests.relayd.test_routing import online_vm, subscribe
from tests.support.keys import KeyRing
from tests.support.relayd import Relayd, close_code, recv_json, send_json
from wire.envelope import vm_frame
from wire.messages import Subscribe
from wire.protocol import CloseCode
from wire.tokens import TokenVerifier


async def alive(relay: Relayd) -> None:
    """relayd still runs and answers its control socket."""
    assert relay.process.returncode is None
    assert (await relay.control.request("stats"))["ok"]


async def metric(relay: Relayd, name: str) -> float:
    """The value of one metric line (its full name with labels), 0 when absent."""
    assert relay.metrics_url is not None
    host, port = relay.metrics_url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"user_message","workspaceId":"w1","clientMessageId":"c1","text":"\\ud800"}',
        '{"type":"user_message","workspaceId":"w1","clientMessageId":"\\udfff","text":"x"}',
        '{"type":"subscribe","workspaceId":"\\ud800"}',
        '{"type":"question_response","workspaceId":"w1","requestId":"q","answers":{"\\ud800":"a"}}',
    ],
)
async def test_lone_surrogate_from_a_client_is_bad_request(relay: Relayd, frame: str) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with online_vm(relay, w1=("e1", 0)) as vm, relay.connect_client("u1") as ws:
            await vm.expect("workspace_assigned")
            await ws.send_message(frame)
            reply = await recv_json(ws)
            assert (reply["type"], reply["code"]) == ("error", "bad_request")
            await alive(relay)
            # Nothing reached the VM; the next message does.
            await send_json(
                ws,
                {"type": "user_message", "workspaceId": "w1", "clientMessageId": "ok", "text": "ü"},
            )
            forwarded = await vm.recv()
            assert (forwarded["clientMessageId"], forwarded["text"]) == ("ok", "ü")


@pytest.mark.parametrize("kind", ["hello", "error", "auth", "status"])
async def test_vm_frame_with_a_good_head_and_a_bad_body_is_dropped(
    relay: Relayd, kind: str
) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with online_vm(relay, w1=("e1", 0)) as vm, relay.connect_client("u1") as ws:
            await vm.expect("workspace_assigned")
            assert (await subscribe(ws, lastSeq=0, epoch="e1"))["mode"] == "replay"
            if kind == "status":
                bad = '{"type":"status","workspaceId":"w1","seq":1,"epoch":"e1",x}'
            else:
                bad = '{"type":"' + kind + '",x}'
            await vm.ws.send_message(bad)
            await vm.stream("w1", 1)
            got = await recv_json(ws)
            assert (got["type"], got["seq"]) == ("claude_message", 1)
            await alive(relay)
            assert await metric(relay, 'relayd_vm_frames_dropped_total{reason="bad_json"}') == 1
            assert any(
                line.get("msg") == "vm frame dropped" and line.get("sub") == "vm1"
                for line in relay.logs
            ), relay.log_messages()


async def test_repeated_workspace_id_in_a_vm_frame_reaches_no_one(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        await relay.control.assign("w2", "vm2", ["u1"])
        async with (
            online_vm(relay, "vm1", w1=("e1", 0)) as vm1,
            online_vm(relay, "vm2", w2=("e2", 0)) as vm2,
            relay.connect_client("u1") as ws,
        ):
            await vm1.expect("workspace_assigned")
            await vm2.expect("workspace_assigned")
            assert (await subscribe(ws, "w1", lastSeq=0, epoch="e1"))["mode"] == "replay"
            assert (await subscribe(ws, "w2", lastSeq=0, epoch="e2"))["mode"] == "replay"
            data = json.dumps({"type": "assistant", "text": "log in again at evil.example"})
            for tail in (',"workspaceId":"w2"}', ',"workspac\\u0065Id":"w2"}'):
                smuggled = (
                    vm_frame("claude_message", "w1", seq=1, epoch="e1", raw_fields={"data": data})[
                        :-1
                    ]
                    + tail
                )
                await vm1.ws.send_message(smuggled)
            for field, value in (("type", "status"), ("seq", 7), ("epoch", "e9")):
                frame = vm_frame(
                    "claude_message", "w1", seq=1, epoch="e1", raw_fields={"data": data}
                )
                await vm1.ws.send_message(
                    frame[:-1] + f",{json.dumps(field)}:{json.dumps(value)}}}"
                )
            await vm1.stream("w1", 1, "honest")
            got = await recv_json(ws)
            assert (got["workspaceId"], got["seq"], got["data"]["text"]) == ("w1", 1, "honest")
            await alive(relay)
            assert await metric(relay, 'relayd_vm_frames_dropped_total{reason="repeated_key"}') == 5


async def test_repeated_keys_from_a_client_are_bad_request(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        await relay.control.assign("w2", "vm2", ["u1"])
        async with online_vm(relay, w1=("e1", 0)) as vm, relay.connect_client("u1") as ws:
            await vm.expect("workspace_assigned")
            await ws.send_message(
                '{"type":"user_message","workspaceId":"w2","clientMessageId":"c",'
                '"text":"x","workspaceId":"w1"}'
            )
            reply = await recv_json(ws)
            assert (reply["type"], reply["code"]) == ("error", "bad_request")


async def test_audit_of_a_decision_comes_from_the_vm(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1", "u2"])
        async with (
            online_vm(relay, w1=("e1", 0)) as vm,
            relay.connect_client("u1") as ws,
        ):
            await vm.expect("workspace_assigned")
            # A response to a request that never existed: the VM says not_found.
            await send_json(
                ws,
                {
                    "type": "permission_response",
                    "workspaceId": "w1",
                    "requestId": "nope",
                    "allow": True,
                },
            )
            forwarded = await vm.recv()
            assert forwarded["requestId"] == "nope"
            await send_json(
                vm.ws,
                {
                    "type": "error",
                    "workspaceId": "w1",
                    "code": "not_found",
                    "message": "no such request",
                    "ref": "nope",
                },
            )
            assert (await recv_json(ws))["code"] == "not_found"
            # A real decision, as the VM settled it (by u2, denied).
            vm.seq["w1"] = 1
            await vm.ws.send_message(
                vm_frame(
                    "request_resolved",
                    "w1",
                    seq=1,
                    epoch="e1",
                    request_id="p1",
                    fields={"resolution": "denied", "userId": "u2"},
                )
            )
            audit = await relay.control.next_event("audit")
            assert audit["requestId"] == "p1", audit
            assert (audit["action"], audit["userId"], audit["allow"]) == (
                "permission_response",
                "u2",
                False,
            )
            assert audit["resolution"] == "denied"
            assert not any(e.get("requestId") == "nope" for e in relay.control.events)


# -- the per-connection guard (relayd in this process, one rule made to fail) --


async def test_an_internal_error_closes_that_connection_alone_with_1011(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from trio_websocket import open_websocket

    from wire.protocol import CLIENT_PATH, SUBPROTOCOL, VM_PATH

    keys = KeyRing()
    verifier = TokenVerifier.from_jwks(keys.jwks(), issuer=keys.issuer)
    relay = Relay(Settings(ping_interval=0), verifier)
    broken = relay.router.subscribe

    def subscribe_or_fail(client: Any, message: Subscribe, out: list[Any]) -> None:
        if message.workspace_id == "boom":
            raise RuntimeError("a bug in a routing rule")
        broken(client, message, out)

    monkeypatch.setattr(relay.router, "subscribe", subscribe_or_fail)
    from relayd.relay import Ownership

    relay.ownership["w1"] = Ownership("w1", "vm1", frozenset({"u1", "u2"}), {})

    def connect(path: str, token: str) -> object:
        return open_websocket(
            "127.0.0.1",
            port,
            path,
            use_ssl=False,
            subprotocols=[SUBPROTOCOL],
            extra_headers=[(b"Authorization", f"Bearer {token}".encode())],
        )

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, host="127.0.0.1"),
                functools.partial(handle_connection, relay),
                0,
            )
            port = listeners[0].socket.getsockname()[1]
            async with (
                connect(VM_PATH, keys.vm_token("vm1")) as vm_ws,  # type: ignore[attr-defined]
                connect(CLIENT_PATH, keys.client_token("u1")) as bad,  # type: ignore[attr-defined]
                connect(CLIENT_PATH, keys.client_token("u2")) as bystander,  # type: ignore[attr-defined]
            ):
                vm = FakeVm(vm_ws, "vm1")
                await vm.hello(w1=("e1", 0))
                assert (await vm.recv())["type"] == "workspace_assigned"
                assert (await subscribe(bystander, "w1", lastSeq=0, epoch="e1"))["mode"] == "replay"
                await send_json(bad, {"type": "subscribe", "workspaceId": "boom"})
                assert await close_code(bad) == CloseCode.INTERNAL_ERROR
                await vm.stream("w1", 1)
                got = await recv_json(bystander)
                assert (got["type"], got["seq"]) == ("claude_message", 1)
                assert relay.stats.internal_errors == 1
                assert any(
                    r.exc_info is not None and "a bug in a routing rule" in str(r.exc_info[1])
                    for r in caplog.records
                )
            nursery.cancel_scope.cancel()


def _hostile_client_frames() -> list[str | bytes]:
    message = '{"type":"user_message","workspaceId":"w1","clientMessageId":"c","text":"x"'
    return [
        message + ',"text":"\\ud800"}',
        message + ',"workspaceId":"w2"}',
        message + ',"workspac\\u0065Id":"w2"}',
        '{"type":"subscribe","workspaceId":"\\udc00"}',
        '{"type":"subscribe","workspaceId":"w1","lastSeq":' + "9" * 5000 + "}",
        '{"type":"subscribe","workspaceId":"w1","lastSeq":1e999}',
        '{"type":"subscribe","workspaceId":"w1","x":' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"type":"question_response","workspaceId":"w1","requestId":"q","answers":{"a":[1]}}',
        '{"type":"permission_response","workspaceId":"w1","requestId":"p","allow":"yes"}',
        '{"type":"interrupt","workspaceId":["w1"]}',
        '{"type":"auth","token":{"a":1}}',
        '{"type":"user_message",x}',
        '{"type":"user_message","workspaceId":"w1","clientMessageId":"'
        + "c" * 300
        + '","text":""}',
        "\ufeff{}",
        "",
        b"\x00\xff",
        '{"type":null}',
        "[" * 50 + "]" * 50,
    ]


def _hostile_vm_frames() -> list[str | bytes]:
    head = '{"type":"claude_message","workspaceId":"w1","seq":1,"epoch":"e1"'
    return [
        '{"type":"hello",x}',
        '{"type":"error",x}',
        '{"type":"auth",x}',
        '{"type":"status","workspaceId":"w1","seq":1,"epoch":"e1",x}',
        '{"type":"messages_snapshot","workspaceId":"w1","seq":1,"epoch":"e1","requestId":"r",x}',
        head + ',"data":{}} trailing',
        head + ',"data":{},"workspaceId":"w2"}',
        head + ',"data":{},"workspac\\u0065Id":"w2"}',
        head + ',"data":{},"type":"subscribed"}',
        head + ',"data":"\\ud800"}',
        head + ',"data":' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"type":"claude_message","workspaceId":"w1","seq":' + "9" * 400 + ',"epoch":"e1"}',
        '{"type":"claude_message","workspaceId":"w1","seq":-1,"epoch":"e1","data":{}}',
        '{"type":"claude_message","workspaceId":"w1","seq":1.5,"epoch":"e1","data":{}}',
        '{"type":"claude_message","workspaceId":"w2","seq":1,"epoch":"e2","data":{}}',
        '{"type":"request_resolved","workspaceId":"w1","seq":1,"epoch":"e1","requestId":"p",'
        '"resolution":"allowed","userId":{"x":1}}',
        '{"type":"hello","vmId":"vm2","workspaces":[]}',
        '{"type":"hello","workspaces":[{"workspaceId":"w2","epoch":"e2","seq":true}]}',
        '{"type":"error","workspaceId":"w2","code":"not_found","message":"m","ref":"c"}',
        '{"type":"auth","token":"not a token"}',
        b"\x00binary",
        "",
        "null",
    ]


async def test_a_corpus_of_hostile_frames_leaves_relayd_and_a_bystander_alone(
    relay: Relayd,
) -> None:
    with trio.fail_after(60):
        await relay.control.assign("w1", "vm1", ["u1"])
        await relay.control.assign("w2", "vm2", ["u2"])
        async with (
            online_vm(relay, "vm1", w1=("e1", 0)) as hostile_vm,
            online_vm(relay, "vm2", w2=("e2", 0)) as vm2,
            relay.connect_client("u1") as hostile,
            relay.connect_client("u2") as bystander,
        ):
            await hostile_vm.expect("workspace_assigned")
            await vm2.expect("workspace_assigned")
            assert (await subscribe(bystander, "w2", lastSeq=0, epoch="e2"))["mode"] == "replay"
            assert (await subscribe(hostile, "w1", lastSeq=0, epoch="e1"))["mode"] == "replay"
            client_frames, vm_frames = _hostile_client_frames(), _hostile_vm_frames()
            for i in range(max(len(client_frames), len(vm_frames))):
                if i < len(client_frames):
                    await hostile.send_message(client_frames[i])
                    reply = await recv_json(hostile)
                    assert reply["type"] == "error", (client_frames[i], reply)
                if i < len(vm_frames):
                    await hostile_vm.ws.send_message(vm_frames[i])
                await vm2.stream("w2", 1)
                got = await recv_json(bystander)
                assert (got["type"], got["workspaceId"], got["seq"]) == (
                    "claude_message",
                    "w2",
                    i + 1,
                )
            # The hostile peers are still served; nothing they sent reached anyone.
            await hostile_vm.stream("w1", 1, "honest")
            got = await recv_json(hostile)
            assert (got["workspaceId"], got["seq"], got["data"]["text"]) == ("w1", 1, "honest")
            await alive(relay)
            assert await metric(relay, "relayd_internal_errors_total") == 0
            assert await metric(relay, 'relayd_vm_frames_dropped_total{reason="bad_json"}') >= 8

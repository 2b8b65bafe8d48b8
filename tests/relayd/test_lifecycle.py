"""Tokens over time, signals, systemd notify, and the control socket, end to end."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionRejected

from tests.relayd.fakevm import FakeVm
from tests.support.relayd import (
    Relayd,
    close_code,
    open_control,
    recv_json,
    send_json,
    start_relayd,
)
from tests.support.waiting import wait_until
from wire.envelope import vm_frame
from wire.protocol import Scope


async def test_token_renewal_and_4401_at_expiry(relay: Relayd) -> None:
    with trio.fail_after(20):
        short = relay.client_token("u1", ttl=2)
        async with (
            relay.connect_client("u1", token=short) as renewed,
            relay.connect_client("u1", token=relay.client_token("u1", ttl=2)) as expiring,
        ):
            # Refused renewals: another user's token, a VM token, garbage.
            for bad in (relay.client_token("u2"), relay.vm_token("u1"), "junk"):
                await send_json(renewed, {"type": "auth", "token": bad})
                assert (await recv_json(renewed))["code"] == "forbidden"
            await send_json(renewed, {"type": "auth", "token": relay.client_token("u1")})
            assert await close_code(expiring) == 4401
            # The renewed one outlived its first token.
            await send_json(renewed, {"type": "subscribe", "workspaceId": "w"})
            assert (await recv_json(renewed))["code"] == "not_found"


async def test_sighup_reloads_the_jwks(relay: Relayd) -> None:
    with trio.fail_after(20):
        old_token = relay.client_token("u1")
        new_key = relay.keys.add_key("k2")
        relay.keys.keys = [new_key]  # rotate: only k2 is published
        relay.keys.write_jwks(relay.jwks_path)
        async with relay.connect_client("u1", token=old_token) as still_open:
            await relay.reload_and_wait()
            with pytest.raises(ConnectionRejected) as refused:
                async with relay.connect_client("u1", token=old_token):
                    pass
            assert refused.value.status_code == 401
            async with relay.connect_client(
                "u1", token=relay.keys.token("u1", Scope.CLIENT, key=new_key)
            ):
                pass
            # Open connections keep going.
            await send_json(still_open, {"type": "subscribe", "workspaceId": "w"})
            assert (await recv_json(still_open))["code"] == "not_found"
        # A broken file keeps the keys it had.
        relay.jwks_path.write_text("{not json")
        await relay.reload_and_wait()
        assert "JWKS reload failed; keeping the old keys" in relay.log_messages()


async def test_sigterm_closes_peers_with_1001_and_exits_0(tmp_path: Path) -> None:
    async with start_relayd(tmp_path) as relay:
        with trio.fail_after(20):
            await relay.control.assign("w1", "vm1", ["u1"])
            async with relay.connect_vm("vm1") as vm, relay.connect_client("u1") as client:
                await FakeVm(vm, "vm1").hello()
                await relay.control.next_event("vm_online")
                relay.process.send_signal(signal.SIGTERM)
                assert await close_code(client) == 1001
                assert await close_code(vm) == 1001
                assert await relay.process.wait() == 0
            assert relay.notices.messages[0]["READY"] == "1"
            assert relay.notices.messages[-1].get("STOPPING") == "1"
            assert not relay.control_socket.exists()


async def test_watchdog_pings_when_asked(tmp_path: Path) -> None:
    env = {"WATCHDOG_USEC": "200000"}
    async with start_relayd(tmp_path, env=env) as relay:
        with trio.fail_after(20):
            # WATCHDOG_PID is unset, so relayd pings (every 0.1 s).
            await relay.notices.wait_for("WATCHDOG", "1")


async def test_control_socket_requests(relay: Relayd) -> None:
    with trio.fail_after(20):
        ctl = relay.control
        hello = await ctl.request("hello", version="1")
        assert hello["version"] == "1"
        assert hello["relayId"]
        await ctl.assign("w1", "vm1", ["u1"])
        async with (
            relay.connect_vm("vm1") as vm1_ws,
            relay.connect_vm("vm2") as vm2_ws,
            relay.connect_client("u1") as client,
        ):
            vm1, vm2 = FakeVm(vm1_ws, "vm1"), FakeVm(vm2_ws, "vm2")
            await vm1.hello(w1=("e1", 0))
            await vm2.hello()
            assert (await vm1.recv())["type"] == "workspace_assigned"
            await send_json(
                client, {"type": "subscribe", "workspaceId": "w1", "lastSeq": 0, "epoch": "e1"}
            )
            assert (await recv_json(client))["mode"] == "replay"
            # Move it to vm2: vm1 releases, vm2 is assigned, the client sees vm1 go.
            await ctl.assign("w1", "vm2", ["u1"])
            assert await vm1.recv() == {"type": "workspace_released", "workspaceId": "w1"}
            assigned = await vm2.expect("workspace_assigned")
            assert assigned["workspaceId"] == "w1"
            assert assigned["issue"]["owner"] == "o"
            assert (await recv_json(client))["status"] == "offline"
            # Release: vm2 told, the client unsubscribed with not_found.
            await ctl.request("release", workspaceId="w1")
            assert await vm2.recv() == {"type": "workspace_released", "workspaceId": "w1"}
            error = await recv_json(client)
            assert (error["code"], error["workspaceId"]) == ("not_found", "w1")
            # Sync replaces the table, then reports every online VM.
            reply = await ctl.request(
                "sync",
                workspaces=[
                    {"workspaceId": "w2", "vmId": "vm1", "userIds": ["u1"], "issue": {"url": "u"}},
                ],
            )
            assert reply["workspaces"] == 1
            online = {(await ctl.next_event("vm_online"))["vmId"] for _ in range(2)}
            assert online == {"vm1", "vm2"}
            assert (await vm1.expect("workspace_assigned"))["workspaceId"] == "w2"
            stats = await ctl.request("stats")
            assert stats["workspaces"] == 1
            assert stats["connections"] == {"clients": 1, "vms": 2}
            # Disconnect: 4403 for the user's connections and for a VM.
            assert (await ctl.request("disconnect", userId="u1"))["closed"] == 1
            assert await close_code(client) == 4403
            assert (await ctl.request("disconnect", vmId="vm2"))["closed"] == 1
            assert await close_code(vm2_ws) == 4403
            assert (await ctl.next_event("vm_offline"))["vmId"] == "vm2"


async def test_control_socket_bad_lines_get_error_replies(relay: Relayd) -> None:
    with trio.fail_after(20):
        ctl = relay.control
        cases = [
            (b"nonsense", None, "bad_request"),
            (b"[1]", None, "bad_request"),
            (b'{"id": "a", "type": "teleport"}', "a", "unknown_type"),
            (b'{"id": "b"}', "b", "bad_request"),
            (b'{"id": "c", "type": "assign", "workspaceId": "w"}', "c", "bad_request"),
            (
                b'{"id": "d", "type": "sync", "workspaces": [{"workspaceId": 1}]}',
                "d",
                "bad_request",
            ),
            (b'{"id": "e", "type": "disconnect"}', "e", "bad_request"),
            (b'{"id": "f", "type": "release", "workspaceId": ""}', "f", "bad_request"),
        ]
        for line, request_id, code in cases:
            await ctl.send_line(line)
            reply = await ctl.next_reply()
            assert reply["ok"] is False, line
            assert (reply["id"], reply["error"]["code"]) == (request_id, code), line
        assert (await ctl.request("stats"))["workspaces"] == 0


async def test_control_socket_mode_and_peer_check(relay: Relayd) -> None:
    mode = stat.S_IMODE(relay.control_socket.stat().st_mode)
    assert mode == 0o600
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    # Even if the file mode were opened up, SO_PEERCRED keeps other users out.
    relay.control_socket.chmod(0o666)
    relay.control_socket.parent.chmod(0o711)
    script = (
        "import os, socket, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "try:\n"
        '    s.sendall(b\'{"id": 1, "type": "stats"}\\n\'); data = s.recv(4096)\n'
        "except (BrokenPipeError, ConnectionResetError):\n"
        "    data = b''\n"
        "print(repr(data))\n"
    )
    # Not measured by coverage (make test): as nobody it could not write its data here.
    env = {k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"}
    with trio.fail_after(20):
        result = await trio.run_process(
            [sys.executable, "-c", script, str(relay.control_socket)],
            capture_stdout=True,
            stderr=subprocess.STDOUT,
            check=False,
            env=env,
        )
        assert result.stdout.strip() == b"b''"
        assert any(line.get("msg") == "control peer refused" for line in relay.logs)


async def test_audit_events_wait_for_a_control_plane(relay: Relayd) -> None:
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with relay.connect_vm("vm1") as vm_ws, relay.connect_client("u1") as client:
            vm = FakeVm(vm_ws, "vm1")
            await vm.hello()
            await relay.control.next_event("vm_online")
            await trio.aclose_forcefully(relay.control.stream)  # the control plane goes away
            await send_json(client, {"type": "interrupt", "workspaceId": "w1"})
            await send_json(
                client,
                {
                    "type": "question_response",
                    "workspaceId": "w1",
                    "requestId": "q1",
                    "answers": {"Which?": "A"},
                },
            )
            assert (await vm.expect("interrupt"))["userId"] == "u1"
            assert (await vm.expect("question_response"))["answers"] == {"Which?": "A"}
            # The answer is audited as the VM settled it.
            await vm_ws.send_message(
                vm_frame(
                    "request_resolved",
                    "w1",
                    seq=1,
                    epoch="e1",
                    request_id="q1",
                    fields={"resolution": "answered", "userId": "u1"},
                )
            )
            async with open_control(relay.control_socket) as ctl:
                first = await ctl.next_event("audit")
                second = await ctl.next_event("audit")
                assert (first["action"], second["action"]) == ("interrupt", "question_response")
                assert (second["requestId"], second["userId"]) == ("q1", "u1")
                assert json.dumps(first)  # plain JSON


async def test_a_vm_connecting_again_replaces_the_old_connection(relay: Relayd) -> None:
    with trio.fail_after(20):
        async with relay.connect_vm("vm1") as old:
            await FakeVm(old, "vm1").hello()
            await relay.control.next_event("vm_online")
            async with relay.connect_vm("vm1") as new:
                assert await close_code(old) == 1008
                await FakeVm(new, "vm1").hello()
                assert (await relay.control.next_event("vm_offline"))["vmId"] == "vm1"
                assert (await relay.control.next_event("vm_online"))["vmId"] == "vm1"


async def test_the_log_says_how_a_peer_left(relay: Relayd) -> None:
    with trio.fail_after(20):
        async with relay.connect_client("u1") as ws:
            # A round trip first: relayd's first ping is then answered.
            await send_json(ws, {"type": "subscribe", "workspaceId": "w1"})
            await recv_json(ws)
            await ws.aclose(4000, "done here")
        raw = await trio.open_tcp_stream(relay.host, relay.port)  # never finishes a handshake
        await raw.aclose()
        async with relay.connect_client("u2") as ws:
            await trio.aclose_forcefully(ws._stream)  # TCP dropped, no close frame

        def codes() -> list[object]:
            return [e.get("code") for e in relay.logs if e.get("msg") == "client gone"]

        await wait_until(lambda: len(codes()) >= 2)  # relayd's log: another process
        assert codes() == [4000, 1006]

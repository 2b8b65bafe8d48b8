"""The control plane over real sockets with the real relayd and a real vmagent (demo).

The flow of the issue: log in, create a workspace from an issue URL (against
the fake GitHub API), see it placed and reported idle, subscribe through
relayd with the issued token, send a message and get the streamed reply,
interrupt (audited), delete it. And a revoked VM is cut off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from argon2 import PasswordHasher
from trio_websocket import ConnectionClosed, WebSocketConnection

from controlplane import store
from controlplane.issues import FetchedIssue, IssueRef
from controlplane.main import main
from controlplane.provisioner import LocalProvisioner
from controlplane.server import Running, prepare_state, serve
from controlplane.settings import Settings
from tests.support.fake_github import FakeGitHub
from tests.support.relayd import (
    Relayd,
    close_code,
    recv_json,
    recv_until,
    send_json,
    start_relayd,
)
from wire.protocol import Scope
from wire.tokens import issue_token

ISSUE = "https://github.com/octo/hello/issues/7"
PASSWORD = "integration password"


@asynccontextmanager
async def stack(
    tmp_path: Path, github: FakeGitHub, provisioner: str = "local", **more: Any
) -> AsyncIterator[tuple[Running, Relayd, httpx.AsyncClient]]:
    """relayd, then the control plane (with its local vmagent), and an HTTP client.

    ``more``: further settings of the control plane.
    """
    settings = Settings(
        state_dir=tmp_path / "cp",
        listen="127.0.0.1:0",
        github_api_url=github.url,
        github_timeout=2.0,
        provisioner=provisioner,
        relay_backoff_max=0.5,
        **more,
    )
    # Keys and database first: relayd starts from the JWKS the control plane writes.
    _keys, db = await trio.to_thread.run_sync(prepare_state, settings)
    db.run_sync(lambda c: store.add_user(c, "alice", _cheap_hash(PASSWORD)))
    db.close()
    async with start_relayd(tmp_path, args=["--jwks", str(settings.jwks_path)]) as relay:
        settings = attrs.evolve(settings, relay_socket=relay.control_socket, relay_url=relay.url)
        env = {**os.environ, "VMAGENT_DEMO_DELAY": "0", "VMAGENT_LOG_LEVEL": "warning"}
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(partial(serve, settings, env=env))
            async with httpx.AsyncClient(base_url=running.url, timeout=5) as http:
                yield running, relay, http
            running.stop()
            nursery.cancel_scope.cancel()


def _cheap_hash(password: str) -> str:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(password)


async def login(
    http: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD
) -> tuple[str, str]:
    response = await http.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["accessToken"], body["user"]["id"]


async def wait_status(
    running: Running,
    http: httpx.AsyncClient,
    headers: dict[str, str],
    workspace_id: str,
    status: str,
) -> dict[str, Any]:
    """Wait, event by event from relayd, until the API shows ``status``."""
    while True:
        seen = running.services.coordinator.wait_event
        response = await http.get(f"/api/workspaces/{workspace_id}", headers=headers)
        body: dict[str, Any] = response.json()
        if body["status"] == status:
            return body
        await seen()


async def drain(conn: WebSocketConnection) -> None:
    """Read until the connection closes (raises ConnectionClosed)."""
    while True:
        await conn.get_message()


@pytest.fixture
def short_tmp() -> Any:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="cp-", dir="/tmp") as path:
        yield Path(path)


async def test_the_whole_flow(short_tmp: Path, github: FakeGitHub) -> None:
    with trio.fail_after(60):
        async with stack(short_tmp, github) as (running, relay, http):
            token, user_id = await login(http)
            headers = {"Authorization": f"Bearer {token}"}
            created = await http.post("/api/workspaces", json={"issueUrl": ISSUE}, headers=headers)
            assert created.status_code == 201, created.text
            ws = created.json()
            assert ws["issue"]["title"] == "Make it greet"
            idle = await wait_status(running, http, headers, ws["id"], "idle")
            assert idle["vmId"]
            # Scraped over real HTTP from loopback, as Prometheus on the host would.
            metrics = await http.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain")
            assert 'controlplane_workspaces{status="idle"} 1.0' in metrics.text
            assert "controlplane_vms_online 1.0" in metrics.text
            assert "controlplane_relay_connected 1.0" in metrics.text
            assert 'route="/api/workspaces",status="201"} 1.0' in metrics.text

            async with relay.connect_client(user_id, token=token) as client:
                await send_json(client, {"type": "subscribe", "workspaceId": ws["id"]})
                subscribed = await recv_json(client)
                assert subscribed["type"] == "subscribed"
                snapshot = await recv_json(client)
                assert snapshot["type"] == "messages_snapshot"
                await send_json(
                    client,
                    {
                        "type": "user_message",
                        "workspaceId": ws["id"],
                        "clientMessageId": "m1",
                        "text": "hello",
                    },
                )
                seen = await recv_until(
                    client,
                    lambda m: m["type"] == "claude_message" and m["data"]["type"] == "result",
                )
                kinds = [m["type"] for m in seen]
                assert "user_message" in kinds
                deltas = [
                    m["data"]["event"]["delta"]
                    for m in seen
                    if m["type"] == "claude_message"
                    and m["data"]["type"] == "stream_event"
                    and m["data"]["event"]["type"] == "content_block_delta"
                ]
                assert deltas  # the reply streamed in pieces
                seqs = [m["seq"] for m in seen if "seq" in m]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

                # An interrupt is forwarded, and audited by the control plane.
                await send_json(client, {"type": "interrupt", "workspaceId": ws["id"]})
                while True:
                    waiting = running.services.coordinator.wait_event
                    audit = (
                        await http.get(f"/api/workspaces/{ws['id']}/audit", headers=headers)
                    ).json()
                    if audit:
                        break
                    await waiting()
                assert audit[0]["action"] == "interrupt"
                assert audit[0]["userId"] == user_id
                assert "sessionId" not in audit[0]  # main

                deleted = await http.delete(f"/api/workspaces/{ws['id']}", headers=headers)
                assert deleted.status_code == 204
            stats = await relay.control.request("stats")
            assert stats["workspaces"] == 0
            archived = (await http.get(f"/api/workspaces/{ws['id']}", headers=headers)).json()
            assert archived["status"] == "deleted"
            health = await http.get("/healthz")
            assert health.json() == {"status": "ok", "database": "ok", "relay": "ok"}


async def test_a_revoked_vm_is_cut_off(short_tmp: Path, github: FakeGitHub) -> None:
    with trio.fail_after(60):
        async with stack(short_tmp, github, provisioner="none") as (running, relay, http):
            services = running.services
            vm = await services.db.run(lambda c: store.add_vm(c, "far-away", "none"))
            vm_token = issue_token(
                services.keyring.signing_key,
                sub=vm.id,
                scope=Scope.VM,
                issuer="ffcloud",
                ttl_seconds=300,
            )
            token, _user = await login(http)
            headers = {"Authorization": f"Bearer {token}"}
            ws = (
                await http.post("/api/workspaces", json={"issueUrl": ISSUE}, headers=headers)
            ).json()
            assert ws["status"] == "provisioning"  # no VM online yet
            async with relay.connect_vm(vm.id, token=vm_token) as conn:
                await send_json(
                    conn, {"type": "hello", "vmId": vm.id, "agentVersion": "t", "workspaces": []}
                )
                assigned = await recv_until(conn, lambda m: m["type"] == "workspace_assigned")
                assert assigned[-1]["workspaceId"] == ws["id"]
                assert assigned[-1]["issue"]["title"] == "Make it greet"
                await services.db.run(lambda c: store.revoke_vm(c, vm.id))
                services.coordinator.kick()
                with pytest.raises(ConnectionClosed) as closed:
                    await drain(conn)
                assert closed.value.reason is not None
                assert closed.value.reason.code == 4403
            # Its workspace waits for another VM again.
            body = (await http.get(f"/api/workspaces/{ws['id']}", headers=headers)).json()
            assert body["status"] == "provisioning"
            assert "vmId" not in body


async def test_a_local_vmagent_that_dies_is_started_again(
    short_tmp: Path, github: FakeGitHub
) -> None:
    with trio.fail_after(60):
        async with stack(short_tmp, github) as (running, _relay, http):
            provisioner = running.provisioner
            assert isinstance(provisioner, LocalProvisioner)
            token, _user = await login(http)
            headers = {"Authorization": f"Bearer {token}"}
            created = await http.post("/api/workspaces", json={"issueUrl": ISSUE}, headers=headers)
            ws = created.json()
            await wait_status(running, http, headers, ws["id"], "idle")
            assert provisioner.starts == {"local-1": 1}
            provisioner.processes["local-1"].kill()
            await wait_status(running, http, headers, ws["id"], "offline")
            await wait_status(running, http, headers, ws["id"], "idle")
            assert provisioner.starts == {"local-1": 2}
            # The new process got a fresh token file, readable by its owner only.
            token_file = running.services.settings.local_vms_dir / "local-1" / "token"
            assert token_file.stat().st_mode & 0o077 == 0


async def test_a_restarted_relayd_gets_the_whole_table_again(
    short_tmp: Path, github: FakeGitHub
) -> None:
    socket_path = short_tmp / "control.sock"
    settings = Settings(
        state_dir=short_tmp / "cp",
        listen="127.0.0.1:0",
        provisioner="none",
        relay_socket=socket_path,
        relay_backoff_max=0.2,
        github_api_url=github.url,
    )
    _keys, db = await trio.to_thread.run_sync(prepare_state, settings)
    user = db.run_sync(lambda c: store.add_user(c, "alice", _cheap_hash(PASSWORD)))
    vm = db.run_sync(lambda c: store.add_vm(c, "far-away", "none"))
    ws = db.run_sync(
        lambda c: store.add_workspace(
            c, user.id, IssueRef("octo", "hello", 7), FetchedIssue(title="Make it greet")
        )
    )
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, True))
    db.run_sync(store.place_pending)
    db.close()
    # Each relayd of the helper has its own socket path; the control plane is
    # pointed at a symlink that follows whichever relayd is running.
    relay_args = ["--jwks", str(settings.jwks_path)]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(partial(serve, settings))
            link = running.services.link
            assert link is not None
            for attempt in (1, 2):
                relay_dir = short_tmp / f"r{attempt}"
                relay_dir.mkdir()
                async with start_relayd(relay_dir, args=relay_args) as relay:
                    socket_path.unlink(missing_ok=True)
                    socket_path.symlink_to(relay.control_socket)
                    await link.wait_connected(attempt)
                    stats = await relay.control.request("stats")
                    assert stats["workspaces"] == 1
                    # The table reached relayd: the VM is told on connect.
                    async with relay.connect_vm(vm.id, token=_vm_token(running, vm.id)) as conn:
                        await send_json(
                            conn,
                            {"type": "hello", "vmId": vm.id, "agentVersion": "t", "workspaces": []},
                        )
                        got = await recv_until(conn, lambda m: m["type"] == "workspace_assigned")
                        assert got[-1]["workspaceId"] == ws.id
            running.stop()


def _vm_token(running: Running, vm_id: str) -> str:
    keyring = running.services.keyring
    return issue_token(
        keyring.signing_key, sub=vm_id, scope=Scope.VM, issuer="ffcloud", ttl_seconds=300
    )


async def cli(
    state_dir: Path, *argv: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """``controlplane ARGV --state-dir STATE_DIR`` in its own process, as an operator runs it."""
    script = "from controlplane.main import main; main()"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLPLANE_")}
    return await trio.run_process(
        [sys.executable, "-c", script, *argv, "--state-dir", str(state_dir)],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
    )


async def test_a_password_change_from_the_cli_cuts_off_the_users_live_connections(
    short_tmp: Path, github: FakeGitHub
) -> None:
    with trio.fail_after(60):
        async with stack(short_tmp, github, provisioner="none", reconcile_interval=0.1) as (
            running,
            relay,
            http,
        ):
            state_dir = running.services.settings.state_dir
            await running.services.db.run(
                lambda c: store.add_user(c, "bob", _cheap_hash("bob's password"))
            )
            alice_token, alice_id = await login(http)
            refresh_cookie = http.cookies.get("ffcloud_refresh")
            assert refresh_cookie
            async with httpx.AsyncClient(base_url=running.url, timeout=5) as bob_http:
                bob_token, _bob_id = await login(bob_http, "bob", "bob's password")
            async with (
                relay.connect_client(alice_id, token=alice_token) as alice,
                relay.connect_client("bob", token=bob_token) as bob,
            ):
                changed = await cli(
                    state_dir,
                    *("user", "add", "alice", "--password-stdin", "--update"),
                    stdin=b"a new passphrase\n",
                )
                assert changed.returncode == 0, changed.stderr.decode()
                # relayd would keep it until the token expires (300 s from now):
                # only the control plane's disconnect closes it within the deadline.
                with trio.fail_after(10):
                    assert await close_code(alice) == 4403
                # Bob's connection is untouched and still served.
                await send_json(bob, {"type": "subscribe", "workspaceId": "no-such-workspace"})
                answer = await recv_json(bob)
                assert answer["type"] == "error"
                assert answer["code"] == "not_found"
            # The session ended everywhere: the refresh cookie is dead, the old
            # password refused; the new one works.
            refreshed = await http.post("/api/auth/refresh")
            assert refreshed.status_code == 401
            old = await http.post(
                "/api/auth/login", json={"username": "alice", "password": PASSWORD}
            )
            assert old.status_code == 401
            await login(http, "alice", "a new passphrase")


async def test_a_new_vm_token_from_the_cli_is_accepted_by_relayd(
    short_tmp: Path, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(60):
        async with stack(short_tmp, github, provisioner="none") as (running, relay, _http):
            state_dir = running.services.settings.state_dir
            assert await in_process(state_dir, "vm", "add", "far-away") == 0
            vm_id = _printed(capsys.readouterr().out)["id"]
            issued = await cli(state_dir, "vm", "token", "far-away")
            assert issued.returncode == 0, issued.stderr.decode()
            printed = _printed(issued.stdout.decode())
            assert printed["id"] == vm_id
            assert printed["token"] not in issued.stderr.decode()
            # The handshake checks the token; relayd reports the VM online only after it.
            async with relay.connect_vm(vm_id, token=printed["token"]) as conn:
                await send_json(
                    conn, {"type": "hello", "vmId": vm_id, "agentVersion": "t", "workspaces": []}
                )
                await relay.control.next_event("vm_online", where=lambda e: e["vmId"] == vm_id)
            # Revoked: no new token.
            assert await in_process(state_dir, "vm", "revoke", "far-away") == 0
            capsys.readouterr()
            assert await in_process(state_dir, "vm", "token", "far-away") == (
                "controlplane: VM 'far-away' is revoked; register it again (vm add)"
            )
            assert capsys.readouterr().out == ""


async def in_process(state_dir: Path, *argv: str) -> int | str | None:
    """``controlplane ARGV`` in a worker thread of this process; its exit code or message."""

    def run() -> int | str | None:
        try:
            main([*argv, "--state-dir", str(state_dir)])
        except SystemExit as done:
            return done.code
        raise AssertionError("main() returned without exiting")

    return await trio.to_thread.run_sync(run)


def _printed(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines())

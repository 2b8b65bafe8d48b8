"""Two nodes on loopback on one throwaway PostgreSQL, with real parts only.

Two relayd processes, two control planes (``serve``, in-process) and a real
vmagent (demo engine, its own process) that dials one node and then the
other. Neither control plane polls (``reconcile_interval`` 600 s): every
change one makes reaches the other through PostgreSQL's ``LISTEN/NOTIFY``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection

from controlplane import nodes, store
from controlplane.db import Database
from controlplane.keys import write_private_file
from controlplane.provisioner import default_command
from controlplane.server import Running, prepare_state, serve
from controlplane.settings import Settings
from tests.controlplane.test_integration import PASSWORD, _cheap_hash, cli, login
from tests.support.fake_github import FakeGitHub
from tests.support.postgres import PostgresCluster
from tests.support.relayd import Relayd, close_code, recv_json, send_json, start_relayd
from tests.support.waiting import wait_until
from wire.protocol import Scope
from wire.tokens import issue_token

ISSUE = "https://github.com/octo/hello/issues/7"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="nodes-", dir="/tmp") as path:
        yield Path(path)


@attrs.define
class Node:
    """One node: its relayd, its control plane, and an HTTP client of its API."""

    relay: Relayd
    running: Running
    http: httpx.AsyncClient
    settings: Settings
    nursery: trio.Nursery
    stopped: trio.Event

    async def restart_control_plane(self) -> None:
        """Stop this node's control plane and start it again (a new HTTP port)."""
        self.running.stop()
        await self.stopped.wait()
        self.stopped = trio.Event()
        self.running = await self.nursery.start(_serve, self.settings, self.stopped)
        await self.http.aclose()
        self.http = httpx.AsyncClient(base_url=self.running.url, timeout=10)


async def _serve(
    settings: Settings, stopped: trio.Event, task_status: trio.TaskStatus[Running]
) -> None:
    try:
        await serve(settings, task_status=task_status)
    finally:
        stopped.set()


@asynccontextmanager
async def two_nodes(
    root: Path, github: FakeGitHub, database: str
) -> AsyncIterator[tuple[Node, Node]]:
    """Nodes ``a`` and ``b`` on ``database``, sharing one set of signing keys."""
    base = Settings(
        state_dir=root / "a",
        listen="127.0.0.1:0",
        github_api_url=github.url,
        github_timeout=2.0,
        provisioner="none",
        relay_backoff_max=0.2,
        database=database,
        node_id="a",
        reconcile_interval=600.0,
        login_max_failures=2,
    )
    _keys, db = await trio.to_thread.run_sync(prepare_state, base)
    hashed = _cheap_hash(PASSWORD)
    db.run_sync(lambda c: [store.add_user(c, name, hashed) for name in ("alice", "bob")])
    db.close()
    # The second node gets a copy of the first one's keys (docs/operations.md).
    (root / "b").mkdir(mode=0o700)
    shutil.copytree(root / "a" / "keys", root / "b" / "keys")
    settings = {"a": base, "b": attrs.evolve(base, state_dir=root / "b", node_id="b")}
    await trio.to_thread.run_sync(prepare_state, settings["b"])
    async with AsyncExitStack() as relays:
        relay = {}
        for name, node_settings in settings.items():
            relay_dir = root / f"relay-{name}"
            relay_dir.mkdir()
            relay[name] = await relays.enter_async_context(
                start_relayd(relay_dir, args=["--jwks", str(node_settings.jwks_path)])
            )
            settings[name] = attrs.evolve(
                node_settings, relay_socket=relay[name].control_socket, relay_url=relay[name].url
            )
        async with trio.open_nursery() as nursery:
            made: dict[str, Node] = {}
            for name, node_settings in settings.items():
                stopped = trio.Event()
                running: Running = await nursery.start(_serve, node_settings, stopped)
                changes = running.services.changes
                assert changes is not None
                await changes.wait_connected()
                http = httpx.AsyncClient(base_url=running.url, timeout=10)
                made[name] = Node(relay[name], running, http, node_settings, nursery, stopped)
            try:
                yield made["a"], made["b"]
            finally:
                for node in made.values():
                    await node.http.aclose()
                    node.running.stop()
            nursery.cancel_scope.cancel()


class VmAgent:
    """A real vmagent (demo engine) for one registered VM, pointed at one node or another."""

    def __init__(self, root: Path, token: str) -> None:
        self.home = root / "vm"
        (self.home / "state").mkdir(parents=True, mode=0o700)
        write_private_file(self.home / "token", token.encode())
        self.process: trio.Process | None = None

    def argv(self, relay_url: str) -> list[str]:
        return [
            default_command("vmagent"),
            "--relay-url",
            relay_url,
            "--token-file",
            str(self.home / "token"),
            "--state-dir",
            str(self.home / "state"),
            "--engine",
            "demo",
            "--no-clone",
        ]

    async def start(self, nursery: trio.Nursery, relay_url: str) -> None:
        env = {**os.environ, "VMAGENT_DEMO_DELAY": "0", "VMAGENT_LOG_LEVEL": "warning"}
        self.process = await nursery.start(
            partial(trio.run_process, self.argv(relay_url), check=False, env=env)
        )

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()


async def recv_until(
    conn: WebSocketConnection, done: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Frames up to and including the first for which ``done`` is true."""
    seen: list[dict[str, Any]] = []
    while True:
        message = await recv_json(conn)
        seen.append(message)
        if done(message):
            return seen


def _is_result(message: dict[str, Any]) -> bool:
    return bool(message["type"] == "claude_message" and message["data"].get("type") == "result")


async def say(conn: WebSocketConnection, workspace_id: str, text: str) -> list[dict[str, Any]]:
    """Send a user message; the frames until Claude's result."""
    await send_json(
        conn,
        {
            "type": "user_message",
            "workspaceId": workspace_id,
            "clientMessageId": text,
            "text": text,
        },
    )
    return await recv_until(conn, _is_result)


def _seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames if "seq" in f and f["type"] != "messages_snapshot"]


@attrs.define
class Scene:
    """A VM connected to node B, and a workspace on it, created by alice through node A."""

    db: Database
    agent: VmAgent
    vm_id: str
    access: str
    user_id: str
    workspace_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}

    async def vm_on(self, node: str) -> bool:
        """Whether the database records the VM online on ``node``."""
        found = await self.db.run(lambda c: store.get_vm(c, self.vm_id))
        recorded = await self.db.run(nodes.vm_nodes)
        return found is not None and found.online and recorded[self.vm_id] == node

    async def status_is(self, http: httpx.AsyncClient, wanted: str) -> bool:
        """Whether the API (of any node) shows the workspace with status ``wanted``."""
        got = await http.get(f"/api/workspaces/{self.workspace_id}", headers=self.headers)
        return bool(got.json()["status"] == wanted)


async def placed_on_b(root: Path, a: Node, b: Node, vms: trio.Nursery) -> Scene:
    """Start a VM against B, log in and create a workspace through A; wait until it is idle."""
    db = a.running.services.db
    vm = await db.run(lambda c: store.add_vm(c, "far-away", "none"))
    keyring = a.running.services.keyring
    token = issue_token(
        keyring.signing_key, sub=vm.id, scope=Scope.VM, issuer="ffcloud", ttl_seconds=300
    )
    agent = VmAgent(root, token)
    await agent.start(vms, b.relay.url)
    access, user_id = await login(a.http)
    scene = Scene(db, agent, vm.id, access, user_id, "")
    await wait_until(partial(scene.vm_on, "b"))
    # Created on A and placed on the VM, which B serves: B's relayd hears of
    # it through PostgreSQL.
    created = await a.http.post("/api/workspaces", json={"issueUrl": ISSUE}, headers=scene.headers)
    assert created.status_code == 201, created.text
    scene.workspace_id = created.json()["id"]
    await wait_until(partial(scene.status_is, a.http, "idle"))
    shown = await a.http.get(f"/api/workspaces/{scene.workspace_id}", headers=scene.headers)
    assert shown.json()["relayUrl"] == b.relay.url
    return scene


async def test_a_workspace_follows_its_vm_from_node_to_node(
    short_tmp: Path, github: FakeGitHub, postgres_url: str
) -> None:
    with trio.fail_after(90):
        async with two_nodes(short_tmp, github, postgres_url) as (a, b), trio.open_nursery() as vms:
            scene = await placed_on_b(short_tmp, a, b, vms)
            agent, access, user_id = scene.agent, scene.access, scene.user_id
            workspace_id, headers = scene.workspace_id, scene.headers

            async with b.relay.connect_client(user_id, token=access) as on_b:
                await send_json(on_b, {"type": "subscribe", "workspaceId": workspace_id})
                subscribed = await recv_json(on_b)
                assert subscribed["type"] == "subscribed"
                first = await recv_until(on_b, lambda m: m["type"] == "messages_snapshot")
                frames = await say(on_b, workspace_id, "hello")
                seqs = _seqs(frames)
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                last_seq = seqs[-1]
                epoch = next(f["epoch"] for f in frames if f.get("epoch"))

                # The VM moves to A: killed, and started again against A.
                await agent.kill()
                await agent.start(vms, a.relay.url)
                assert await close_code(on_b) == 4307
            # Any node's API says where it is now (no stickiness).
            moved = (await b.http.get(f"/api/workspaces/{workspace_id}", headers=headers)).json()
            assert moved["relayUrl"] == a.relay.url
            assert await scene.vm_on("a")

            async with a.relay.connect_client(user_id, token=access) as on_a:
                await send_json(
                    on_a,
                    {
                        "type": "subscribe",
                        "workspaceId": workspace_id,
                        "lastSeq": last_seq,
                        "epoch": epoch,
                    },
                )
                again = await recv_until(on_a, lambda m: m["type"] == "messages_snapshot")
                snapshot = again[-1]
                # Nothing lost: the new node brings the whole conversation, at
                # least up to the last seq the client had (the VM reports its
                # status again when it comes back), in the same epoch.
                assert snapshot["epoch"] == epoch
                assert snapshot["seq"] >= last_seq
                assert "hello" in str(snapshot["messages"])
                assert len(snapshot["messages"]) > len(first[-1]["messages"])
                # And it goes on from there, through A.
                more = _seqs(await say(on_a, workspace_id, "and again"))
                after = snapshot["seq"] + 1
                assert more == list(range(after, after + len(more)))
            vms.cancel_scope.cancel()


async def test_a_password_change_on_one_node_ends_sockets_on_the_other(
    short_tmp: Path, github: FakeGitHub, postgres_url: str
) -> None:
    with trio.fail_after(60):
        async with two_nodes(short_tmp, github, postgres_url) as (a, b):
            access, user_id = await login(a.http)
            async with (
                b.relay.connect_client(user_id, token=access) as on_b,
                a.relay.connect_client(user_id, token=access) as on_a,
            ):
                done = await cli(
                    short_tmp / "a",
                    "user",
                    "add",
                    "alice",
                    "--update",
                    "--password-stdin",
                    "--database",
                    postgres_url,
                    stdin=b"a new password\n",
                )
                assert done.returncode == 0, done.stderr
                assert await close_code(on_b) == 4403
                assert await close_code(on_a) == 4403
            # The old token is refused by B's API too.
            me = await b.http.get("/api/me", headers={"Authorization": f"Bearer {access}"})
            assert me.status_code == 401


async def test_login_throttling_holds_across_nodes(
    short_tmp: Path, github: FakeGitHub, postgres_url: str
) -> None:
    with trio.fail_after(60):
        async with two_nodes(short_tmp, github, postgres_url) as (a, b):
            wrong = {"username": "bob", "password": "wrong"}
            for _ in range(2):  # login_max_failures
                assert (await a.http.post("/api/auth/login", json=wrong)).status_code == 401
            # The next attempt comes too soon, whichever node it reaches, even
            # with the right password.
            right = {"username": "bob", "password": PASSWORD}
            refused = await b.http.post("/api/auth/login", json=right)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            # Another user is not slowed down.
            assert (
                await b.http.post(
                    "/api/auth/login", json={"username": "alice", "password": PASSWORD}
                )
            ).status_code == 200


async def test_relays_serve_through_restarts_of_postgresql_and_a_control_plane(
    short_tmp: Path, github: FakeGitHub, postgres_cluster: PostgresCluster
) -> None:
    database = postgres_cluster.database()
    with trio.fail_after(120):
        async with two_nodes(short_tmp, github, database) as (a, b), trio.open_nursery() as vms:
            scene = await placed_on_b(short_tmp, a, b, vms)
            async with b.relay.connect_client(scene.user_id, token=scene.access) as on_b:
                await send_json(on_b, {"type": "subscribe", "workspaceId": scene.workspace_id})
                await recv_until(on_b, lambda m: m["type"] == "messages_snapshot")
                seen = _seqs(await say(on_b, scene.workspace_id, "before"))

                # PostgreSQL restarts: B's relayd keeps relaying the conversation
                # meanwhile (it needs no database), on the same socket.
                await trio.to_thread.run_sync(postgres_cluster.restart)
                seen += _seqs(await say(on_b, scene.workspace_id, "while the database restarted"))
                for node in (a, b):
                    changes = node.running.services.changes
                    assert changes is not None
                    await changes.wait_connected(2)

                # B's control plane restarts: the same socket goes on too, and
                # the new control plane re-syncs its relayd.
                await b.restart_control_plane()
                new_link = b.running.services.link
                assert new_link is not None
                await new_link.wait_connected()
                seen += _seqs(
                    await say(on_b, scene.workspace_id, "while B's control plane restarted")
                )
                # Every frame once, none missing, on one socket.
                assert seen == list(range(seen[0], seen[0] + len(seen)))
                stats = await b.relay.control.request("stats")
                assert stats["workspaces"] == 1

                # And after both, a change on one node still reaches the other at
                # once: the VM moves to A and B's client is told.
                await scene.agent.kill()
                await scene.agent.start(vms, a.relay.url)
                assert await close_code(on_b) == 4307
            assert await scene.vm_on("a")
            vms.cancel_scope.cancel()


async def test_an_audit_event_from_while_postgresql_was_down_is_stored_after(
    short_tmp: Path, github: FakeGitHub, postgres_cluster: PostgresCluster
) -> None:
    database = postgres_cluster.database()
    with trio.fail_after(120):
        async with two_nodes(short_tmp, github, database) as (a, b), trio.open_nursery() as vms:
            scene = await placed_on_b(short_tmp, a, b, vms)
            coordinator = b.running.services.coordinator
            async with b.relay.connect_client(scene.user_id, token=scene.access) as on_b:
                await trio.to_thread.run_sync(postgres_cluster.stop)
                try:
                    # relayd needs no database: the interrupt goes through, and
                    # its audit event reaches B's control plane, which holds it.
                    await send_json(on_b, {"type": "interrupt", "workspaceId": scene.workspace_id})
                    await wait_until(lambda: len(coordinator._held_audit) == 1)
                finally:
                    await trio.to_thread.run_sync(postgres_cluster.start)
            coordinator.kick()

            async def audited() -> bool:
                got = await a.http.get(
                    f"/api/workspaces/{scene.workspace_id}/audit", headers=scene.headers
                )
                return got.status_code == 200 and [e["action"] for e in got.json()] == ["interrupt"]

            await wait_until(audited)
            assert not coordinator._held_audit
            assert coordinator.audit_dropped == 0
            vms.cancel_scope.cancel()

"""Benchmark: two nodes on one PostgreSQL: deliveries, and a VM that moves.

Everything real on loopback except the VMs and the clients, which this
process plays: a throwaway PostgreSQL cluster (``tests/support/postgres.py``),
two relayd processes, two control planes (``serve``, in this process, with
``--reconcile-interval`` 600 s so that only ``LISTEN/NOTIFY`` carries changes
between them), one VM per node and N workspaces spread over the two VMs by
the control planes' placement, one client per workspace on its workspace's
node (``relayUrl`` from the API).

* **deliveries**: each VM sends M messages to each of its workspaces, one
  frame per write; the time until every client has all of them, as
  deliveries per second.
* **move**: node B's VM disconnects and dials node A (a new connection, the
  same token, ``hello`` with its logs). Each of its clients on B is closed
  with 4307, asks node B's API for the workspace's ``relayUrl``, connects to
  A and subscribes from its ``lastSeq``. The time from the VM's ``hello`` on
  A until the last of those clients has the VM's newest seq on A (its
  snapshot), and the slowest single client.

This process shares the machine's cores with both relayd processes, both
control planes and PostgreSQL, so the figures are upper bounds.

Run: ``.venv/bin/python bench/nodes.py [--workspaces 20] [--messages 200]``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from argon2 import PasswordHasher
from trio_websocket import ConnectionClosed, WebSocketConnection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controlplane import store
from controlplane.issues import FetchedIssue, IssueRef
from controlplane.server import Running, prepare_state, serve
from controlplane.settings import Settings
from tests.relayd.fakevm import FakeVm
from tests.support.postgres import discard, find_bindir, start_cluster
from tests.support.relayd import Relayd, recv_json, send_json, start_relayd
from tests.support.waiting import wait_until
from wire.protocol import Scope
from wire.tokens import issue_token

PASSWORD = "bench password"
#: Workspaces per user (relayd allows 32 connections per user by default).
PER_USER = 10


@attrs.define
class Follower:
    """One client following one workspace; the newest seq it has."""

    workspace_id: str
    token: str
    seq: int = 0
    epoch: str | None = None
    #: When it was closed with 4307, and when it had its stream back on the new node.
    moved_at: float | None = None
    back_at: float | None = None

    async def follow(self, conn: WebSocketConnection, resume: bool, ready: trio.Event) -> bool:
        """Subscribe and read until the connection ends; True if it ended with 4307."""
        subscribe: dict[str, Any] = {"type": "subscribe", "workspaceId": self.workspace_id}
        if resume and self.epoch is not None:
            subscribe |= {"lastSeq": self.seq, "epoch": self.epoch}
        await send_json(conn, subscribe)
        ready.set()
        try:
            while True:
                message = await recv_json(conn)
                if isinstance(message.get("seq"), int):
                    self.seq = max(self.seq, message["seq"])
                if message.get("epoch"):
                    self.epoch = message["epoch"]
                kind, mode = message.get("type"), message.get("mode")
                if resume and (kind == "messages_snapshot" or mode == "replay"):
                    self.back_at = time.perf_counter()
        except ConnectionClosed as exc:
            return exc.reason is not None and exc.reason.code == 4307


async def vm_loop(vm: FakeVm) -> None:
    """Answer relayd's snapshot requests until the connection ends."""
    try:
        while True:
            frame = await vm.recv()
            if frame["type"] == "snapshot_request":
                await vm.snapshot(frame["workspaceId"], frame["requestId"])
            elif frame["type"] == "workspace_assigned":
                vm.epoch.setdefault(frame["workspaceId"], "e1")
    except ConnectionClosed:
        return


async def run(workspaces: int, messages: int) -> dict[str, float]:
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("bench/nodes.py: PostgreSQL is not installed (scripts/system-deps)")
    cluster = start_cluster(bindir)
    root = Path(tempfile.mkdtemp(prefix="bn-", dir="/tmp"))
    try:
        return await _run(root, cluster.database(), workspaces, messages)
    finally:
        discard(cluster)
        shutil.rmtree(root, ignore_errors=True)


async def _run(root: Path, database: str, workspaces: int, messages: int) -> dict[str, float]:
    base = Settings(
        state_dir=root / "a",
        listen="127.0.0.1:0",
        provisioner="none",
        relay_backoff_max=0.2,
        database=database,
        node_id="a",
        reconcile_interval=600.0,
        github_api_url="http://127.0.0.1:9",
    )
    _keys, db = await trio.to_thread.run_sync(prepare_state, base)
    hashed = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)

    def add_user(name: str) -> store.User:
        return db.run_sync(lambda c: store.add_user(c, name, hashed))

    def add_vm(name: str) -> str:
        return db.run_sync(lambda c: store.add_vm(c, name, "none")).id

    users = [add_user(f"u{i}") for i in range(math.ceil(workspaces / PER_USER))]
    vm_ids = [add_vm("vm-a"), add_vm("vm-b")]
    db.close()
    (root / "b").mkdir(mode=0o700)
    shutil.copytree(root / "a" / "keys", root / "b" / "keys")
    settings = {"a": base, "b": attrs.evolve(base, state_dir=root / "b", node_id="b")}
    await trio.to_thread.run_sync(prepare_state, settings["b"])
    async with AsyncExitStack() as relay_stack:
        relays: dict[str, Relayd] = {}
        for name, node in settings.items():
            (root / f"r{name}").mkdir()
            relays[name] = await relay_stack.enter_async_context(
                start_relayd(root / f"r{name}", args=["--jwks", str(node.jwks_path)], metrics=False)
            )
            settings[name] = attrs.evolve(
                node, relay_socket=relays[name].control_socket, relay_url=relays[name].url
            )
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            results = await _measure(
                nursery, stack, relays, settings, users, vm_ids, workspaces, messages
            )
            nursery.cancel_scope.cancel()
    return results


async def _measure(
    nursery: trio.Nursery,
    stack: AsyncExitStack,
    relays: dict[str, Relayd],
    settings: dict[str, Settings],
    users: list[store.User],
    vm_ids: list[str],
    workspaces: int,
    messages: int,
) -> dict[str, float]:
    results: dict[str, float] = {}
    if True:
        running: dict[str, Running] = {}
        for name, node in settings.items():
            running[name] = await nursery.start(partial(serve, node))
        services = running["a"].services
        key = services.keyring.signing_key

        def vm_token(vm_id: str) -> str:
            return issue_token(key, sub=vm_id, scope=Scope.VM, issuer="ffcloud", ttl_seconds=3600)

        hello: dict[str, Any] = {"type": "hello", "agentVersion": "bench", "workspaces": []}
        vms: dict[str, FakeVm] = {}
        vm_scope = {name: trio.CancelScope() for name in ("a", "b")}
        for name, vm_id in zip(("a", "b"), vm_ids, strict=True):
            ws = await stack.enter_async_context(
                relays[name].connect_vm(vm_id, token=vm_token(vm_id))
            )
            vms[name] = FakeVm(ws, vm_id)
            await send_json(ws, {**hello, "vmId": vm_id})
            nursery.start_soon(_scoped, vm_scope[name], vm_loop, vms[name])

        async def online() -> bool:
            found = await services.db.run(store.list_vms)
            return sum(1 for v in found if v.online) == len(vm_ids)

        def add_workspace(conn: Any, user_id: str, number: int) -> str:
            ref = IssueRef("bench", "nodes", number)
            return store.add_workspace(conn, user_id, ref, FetchedIssue(title="bench")).id

        await wait_until(online)
        ids: list[str] = []
        for i in range(workspaces):
            user_id = users[i // PER_USER].id
            ids.append(await services.db.run(partial(add_workspace, user_id=user_id, number=i + 1)))
        services.coordinator.kick()

        async with httpx.AsyncClient(base_url=running["b"].url, timeout=10) as api:
            tokens = {}
            for user in users:
                reply = await api.post(
                    "/api/auth/login", json={"username": user.username, "password": PASSWORD}
                )
                tokens[user.id] = reply.json()["accessToken"]
            owner_of = {ws: users[i // PER_USER].id for i, ws in enumerate(ids)}

            async def where(workspace_id: str) -> tuple[str, str | None]:
                token = tokens[owner_of[workspace_id]]
                body = (
                    await api.get(
                        f"/api/workspaces/{workspace_id}",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                ).json()
                return body["relayUrl"], body.get("vmId")

            async def placed() -> bool:
                found = [(await where(w))[1] for w in ids]
                return all(vm is not None for vm in found)

            await wait_until(placed, interval=0.05)
            node_of_url = {relays[n].url: n for n in relays}
            followers = {w: Follower(w, tokens[owner_of[w]]) for w in ids}
            node_of = {w: node_of_url[(await where(w))[0]] for w in ids}
            on_b = [w for w in ids if node_of[w] == "b"]
            # Every VM owns what the database says.
            vm_of = {w: ("a" if (await where(w))[1] == vm_ids[0] else "b") for w in ids}
            assert node_of == vm_of, "each workspace is relayed by its VM's node"

            async def client(workspace_id: str, ready: trio.Event) -> None:
                f = followers[workspace_id]
                node = node_of[workspace_id]
                resume = False
                while True:
                    async with relays[node].connect_client(
                        owner_of[workspace_id], token=f.token
                    ) as conn:
                        moved = await f.follow(conn, resume, ready)
                    if not moved:
                        return
                    f.moved_at = time.perf_counter()
                    url, _vm = await where(workspace_id)
                    node, resume, ready = node_of_url[url], True, trio.Event()

            async with trio.open_nursery() as clients:
                for w in ids:
                    ready = trio.Event()
                    clients.start_soon(client, w, ready)
                    await ready.wait()

                async def subscribed() -> bool:
                    stats = [await relays[n].control.request("stats") for n in relays]
                    return sum(int(s["connections"]["clients"]) for s in stats) == len(ids)

                await wait_until(subscribed, interval=0.05)
                await trio.sleep(0.5)  # the snapshots are answered
                # Deliveries: every VM streams M messages to each of its workspaces.
                start = time.perf_counter()
                for name, vm in vms.items():
                    mine = [w for w in ids if vm_of[w] == name]
                    for _ in range(messages):
                        for w in mine:
                            await vm.ws.send_message(vm.frame(w))
                target = {w: vms[vm_of[w]].seq[w] for w in ids}
                await wait_until(
                    lambda: all(followers[w].seq >= target[w] for w in ids), interval=0.005
                )
                took = time.perf_counter() - start
                results["deliveries"] = len(ids) * messages
                results["deliveries_per_s"] = len(ids) * messages / took

                # Move: B's VM dials A.
                vm_scope["b"].cancel()
                await vms["b"].ws.aclose()
                moving = vms["b"]
                async with relays["a"].connect_vm(vm_ids[1], token=vm_token(vm_ids[1])) as conn:
                    moved_vm = FakeVm(conn, vm_ids[1])
                    moved_vm.seq, moved_vm.epoch = dict(moving.seq), dict(moving.epoch)
                    logs = [
                        {"workspaceId": w, "epoch": moved_vm.epoch[w], "seq": moved_vm.seq[w]}
                        for w in on_b
                    ]
                    clients.start_soon(vm_loop, moved_vm)
                    t0 = time.perf_counter()
                    await send_json(conn, {**hello, "vmId": vm_ids[1], "workspaces": logs})

                    def all_back() -> bool:
                        return all(
                            followers[w].back_at is not None and followers[w].seq >= moved_vm.seq[w]
                            for w in on_b
                        )

                    await wait_until(all_back, interval=0.005)
                    back = {w: followers[w].back_at or t0 for w in on_b}
                    results["moved_clients"] = len(on_b)
                    results["move_all_caught_up_ms"] = (max(back.values()) - t0) * 1000
                    results["move_slowest_client_ms"] = (
                        max(back[w] - (followers[w].moved_at or t0) for w in on_b) * 1000
                    )
                    clients.cancel_scope.cancel()
        for one in running.values():
            one.stop()
    return results


async def _scoped(scope: trio.CancelScope, f: Any, *args: Any) -> None:
    with scope:
        await f(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspaces", type=int, default=20)
    parser.add_argument("--messages", type=int, default=200, help="per workspace")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds for the whole run")
    args = parser.parse_args()

    async def bounded() -> dict[str, float]:
        with trio.fail_after(args.deadline):
            return await run(args.workspaces, args.messages)

    results = trio.run(bounded)
    print(
        f"two nodes, {args.workspaces} workspaces (one client each), {args.messages} messages each"
    )
    print(f"  deliveries: {int(results['deliveries'])} at {results['deliveries_per_s']:,.0f}/s")
    print(
        f"  VM moved B -> A: {int(results['moved_clients'])} clients caught up on A "
        f"{results['move_all_caught_up_ms']:.0f} ms after its hello "
        f"(slowest client {results['move_slowest_client_ms']:.0f} ms from its 4307)"
    )


if __name__ == "__main__":
    main()

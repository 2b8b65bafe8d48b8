"""Several nodes on one database: VMs recorded per node, relay URLs, and change notifications."""

from __future__ import annotations

import socket
import subprocess

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from controlplane import nodes, store
from controlplane.changes import ChangeListener, libpq_url
from controlplane.db import Database
from controlplane.issues import FetchedIssue, IssueRef
from tests.support.postgres import (
    OWNER_FILE,
    PostgresCluster,
    discard,
    find_bindir,
    start_cluster,
)
from tests.support.waiting import wait_until


def _placed(db: Database) -> tuple[store.Vm, store.Workspace]:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    vm = db.run_sync(lambda c: store.add_vm(c, "vm", "none"))
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, True, node_id="a"))
    ws = db.run_sync(
        lambda c: store.add_workspace(c, user.id, IssueRef("o", "r", 1), FetchedIssue())
    )
    db.run_sync(store.place_pending)
    return vm, ws


def test_a_vm_is_recorded_on_the_node_that_reported_it(db: Database) -> None:
    vm, ws = _placed(db)
    assert db.run_sync(nodes.vm_nodes) == {vm.id: "a"}
    # It moves to b; a's late "offline" does not undo b's "online".
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, True, node_id="b"))
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, False, node_id="a"))
    db.run_sync(lambda c: store.set_all_vms_offline(c, node_id="a"))
    assert db.run_sync(lambda c: store.get_vm(c, vm.id)).online  # type: ignore[union-attr]
    assert db.run_sync(nodes.vm_nodes) == {vm.id: "b"}
    # Its own node's word counts.
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, False, node_id="b"))
    assert db.run_sync(lambda c: store.get_workspace(c, ws.id)).status == "offline"  # type: ignore[union-attr]
    assert db.run_sync(lambda c: nodes.workspaces_of(c, [vm.id])) == [ws.id]
    assert db.run_sync(lambda c: nodes.workspaces_of(c, [])) == []


def test_a_workspace_carries_its_vm_nodes_relay_url(db: Database) -> None:
    db.run_sync(lambda c: nodes.register(c, "a", "wss://example.com/nodes/a"))
    db.run_sync(lambda c: nodes.register(c, "b", "wss://example.com/nodes/old-b"))
    db.run_sync(lambda c: nodes.register(c, "b", "wss://example.com/nodes/b"))
    assert db.run_sync(nodes.list_nodes) == {
        "a": "wss://example.com/nodes/a",
        "b": "wss://example.com/nodes/b",
    }
    vm, ws = _placed(db)
    found = db.run_sync(lambda c: store.get_workspace(c, ws.id))
    assert found is not None
    assert found.relay_url == "wss://example.com/nodes/a"
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, True, node_id="b"))
    listed = db.run_sync(lambda c: store.list_workspaces(c, ws.user_id))
    assert [w.relay_url for w in listed] == ["wss://example.com/nodes/b"]
    # A node that never registered (no row): no URL; the API falls back on its own.
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, True, node_id="c"))
    assert db.run_sync(lambda c: store.get_workspace(c, ws.id)).relay_url is None  # type: ignore[union-attr]


@given(
    served=st.sets(st.sampled_from(["v1", "v2", "v3", "v4"])),
    recorded=st.dictionaries(
        st.sampled_from(["v1", "v2", "v3", "v4"]), st.none() | st.sampled_from(["a", "b"])
    ),
)
def test_moved_away_is_exactly_the_served_vms_now_elsewhere(
    served: set[str], recorded: dict[str, str | None]
) -> None:
    gone = nodes.moved_away(served, recorded, "a")
    assert gone <= served
    for vm in served:
        assert (vm in gone) == (recorded.get(vm) == "b")


@given(st.text(max_size=80))
def test_node_ids_are_short_plain_names(text: str) -> None:
    ok = nodes.valid_node_id(text)
    assert ok == (
        0 < len(text) <= 64 and all(c.isascii() and (c.isalnum() or c in "._-") for c in text)
    )
    assert nodes.valid_node_id("node-1.eu_west")
    assert not nodes.valid_node_id("node 1")


def test_only_postgresql_urls_are_listened_on() -> None:
    assert libpq_url("sqlite:///x.db") is None
    assert libpq_url("postgresql+psycopg://u:p%40ss@127.0.0.1:5/db") == (
        "postgresql://u:p%40ss@127.0.0.1:5/db"
    )
    assert not ChangeListener("sqlite:///x.db", lambda: None).enabled


async def test_the_listener_hears_another_process_change_and_survives_a_restart(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.database()
    db = Database.open(url)
    kicks = 0

    def kick() -> None:
        nonlocal kicks
        kicks += 1

    listener = ChangeListener(url, kick, backoff_max=0.2)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(listener.run)
                await listener.wait_connected()
                assert kicks == 1  # once at connect: nothing heard before it counts
                # A change that concerns relayd, by another connection, is heard.
                user = await db.run(lambda c: store.add_user(c, "alice", "h"))
                await db.run(lambda c: store.add_session(c, user, "t", ttl=60, max_age=60))
                await wait_until(lambda: listener.received >= 1)
                before = listener.received
                # PostgreSQL goes away and comes back: the listener reconnects, looks again.
                await trio.to_thread.run_sync(postgres_cluster.restart)
                await listener.wait_connected(2)
                assert kicks >= 3
                await db.run(lambda c: store.set_password(c, "alice", "h2"))
                await wait_until(lambda: listener.received > before)
                nursery.cancel_scope.cancel()
    finally:
        db.close()


def test_a_cluster_left_by_a_killed_test_run_is_removed_by_the_next() -> None:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (scripts/system-deps installs it)")
    orphan = start_cluster(bindir)
    # As if its test process had been killed: the owner named is gone.
    (orphan.root / OWNER_FILE).write_text(str(_finished_pid()))
    mine = start_cluster(bindir)
    try:
        assert not orphan.root.exists()
        assert mine.root.exists()
        # The orphan's server is stopped: its port refuses connections.
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", orphan.port), 1):
            pass
    finally:
        discard(mine)


def _finished_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid

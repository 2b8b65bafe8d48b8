"""The relayd link and the coordinator against a fake control socket (no relayd).

The fake answers every request ``ok`` (or as told), records them, and lets
the test write events and drop the connection.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

from controlplane import coordinator as coordinator_module
from controlplane import store
from controlplane.coordinator import Coordinator, parse_time, sync_entries
from controlplane.db import Database, utcnow
from controlplane.issues import FetchedIssue, IssueRef
from controlplane.relaylink import LineReader, RelayLink, RelayRefused, RelayUnavailable
from controlplane.schema import users


class FakeRelay:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.send_request, self.requests = trio.open_memory_channel[dict[str, Any]](100)
        self.stream: trio.SocketStream | None = None
        self.connections = 0
        self.refuse: set[str] = set()
        self.silent: set[str] = set()
        #: Request types answered as an older relayd would: ``unknown_type``.
        self.unknown: set[str] = set()
        self.connected = trio.Event()
        self.lock = trio.Lock()

    async def handle(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.connections += 1
        self.connected.set()
        reader = LineReader(stream)
        try:
            while True:
                request = json.loads(await reader.next_line())
                await self.send_request.send(request)
                if request["type"] in self.silent:
                    continue
                if request["type"] in self.refuse | self.unknown:
                    code = "unknown_type" if request["type"] in self.unknown else "bad_request"
                    reply = {
                        "id": request["id"],
                        "ok": False,
                        "error": {"code": code, "message": "no"},
                    }
                else:
                    reply = {"id": request["id"], "ok": True, "relayId": "fake"}
                async with self.lock:
                    await stream.send_all(json.dumps(reply).encode() + b"\n")
        except Exception:
            return

    async def send(self, obj: dict[str, Any] | bytes) -> None:
        assert self.stream is not None
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        async with self.lock:
            await self.stream.send_all(data + b"\n")

    async def drop(self) -> None:
        assert self.stream is not None
        self.connected = trio.Event()
        await self.stream.aclose()

    async def next(self, kind: str) -> dict[str, Any]:
        while True:
            request = await self.requests.receive()
            if request["type"] == kind:
                return request


@asynccontextmanager
async def fake_relay(path: Path) -> AsyncIterator[FakeRelay]:
    fake = FakeRelay(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(8)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, fake.handle, [trio.SocketListener(sock)])
        yield fake
        nursery.cancel_scope.cancel()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cpl-", dir="/tmp") as path:
        yield Path(path)


@pytest.fixture
def db(sock_dir: Path) -> Iterator[Database]:
    database = Database.open(f"sqlite:///{sock_dir / 'cp.db'}")
    yield database
    database.close()


@asynccontextmanager
async def running_link(
    db: Database, path: Path, request_timeout: float = 2.0
) -> AsyncIterator[tuple[RelayLink, Coordinator]]:
    coordinator = Coordinator(db, interval=3600)
    link = RelayLink(
        path,
        on_event=coordinator.on_event,
        on_connect=coordinator.on_connect,
        backoff_max=0.05,
        request_timeout=request_timeout,
    )
    coordinator.attach(link)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        nursery.start_soon(coordinator.run)
        yield link, coordinator
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def both(
    sock_dir: Path, db: Database
) -> AsyncIterator[tuple[FakeRelay, RelayLink, Coordinator]]:
    path = sock_dir / "r.sock"
    async with fake_relay(path) as fake, running_link(db, path) as (link, coord):
        yield fake, link, coord


def add_workspace(db: Database, user_id: str, number: int) -> store.Workspace:
    ref = IssueRef("octo", "hello", number)
    return db.run_sync(lambda c: store.add_workspace(c, user_id, ref, FetchedIssue(title="T")))


async def test_hello_then_full_sync_then_assign_when_a_vm_comes(
    sock_dir: Path, db: Database
) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    vm = db.run_sync(lambda c: store.add_vm(c, "vm-a", "none"))
    placed = add_workspace(db, user.id, 1)
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, True))
    db.run_sync(store.place_pending)
    pending = add_workspace(db, user.id, 2)
    with trio.fail_after(10):
        async with (
            fake_relay(sock_dir / "r.sock") as fake,
            running_link(db, fake.path) as (link, coord),
        ):
            hello = await fake.next("hello")
            assert hello["version"] == 1
            sync = await fake.next("sync")
            assert [w["workspaceId"] for w in sync["workspaces"]] == [placed.id]
            entry = sync["workspaces"][0]
            assert entry["vmId"] == vm.id
            assert entry["userIds"] == [user.id]
            assert entry["issue"] == {
                "url": "https://github.com/octo/hello/issues/1",
                "owner": "octo",
                "repo": "hello",
                "number": 1,
                "title": "T",
            }
            await link.wait_connected()
            assert link.relay_id == "fake"
            # Every VM counts as offline until relayd says otherwise.
            assert not db.run_sync(lambda c: store.get_vm(c, vm.id)).online  # type: ignore[union-attr]
            await fake.send({"type": "vm_online", "vmId": vm.id})
            assign = await fake.next("assign")
            assert assign["workspaceId"] == pending.id
            assert assign["vmId"] == vm.id
            assert coord.online_vms == {vm.id}


async def test_reconnects_and_resyncs_after_the_connection_drops(
    sock_dir: Path, db: Database
) -> None:
    with trio.fail_after(10):
        async with (
            fake_relay(sock_dir / "r.sock") as fake,
            running_link(db, fake.path) as (link, _),
        ):
            await fake.next("sync")
            await link.wait_connected()
            await fake.drop()
            await fake.next("hello")
            await fake.next("sync")
            assert fake.connections == 2
            await link.wait_connected(2)
            assert link.connected
            assert (await link.request("stats"))["ok"] is True


async def test_requests_fail_fast_while_down_and_on_refusal(sock_dir: Path, db: Database) -> None:
    with trio.fail_after(10):
        async with running_link(db, sock_dir / "nobody.sock") as (link, coordinator):
            with pytest.raises(RelayUnavailable):
                await link.request("stats")
            await coordinator.release("w1")  # logged, not raised: the next sync covers it
        async with (
            fake_relay(sock_dir / "r.sock") as fake,
            running_link(db, fake.path) as (link, _),
        ):
            await link.wait_connected()
            fake.refuse.add("stats")
            with pytest.raises(RelayRefused) as refused:
                await link.request("stats")
            assert refused.value.code == "bad_request"


async def test_a_silent_relay_times_out(sock_dir: Path, db: Database) -> None:
    with trio.fail_after(10):
        async with (
            fake_relay(sock_dir / "r.sock") as fake,
            running_link(db, fake.path, request_timeout=0.2) as (link, _),
        ):
            await link.wait_connected()
            fake.silent.add("stats")
            with pytest.raises(RelayUnavailable, match="did not answer"):
                await link.request("stats")


async def test_events_are_stored_and_junk_is_ignored(sock_dir: Path, db: Database) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    vm = db.run_sync(lambda c: store.add_vm(c, "vm-a", "none"))
    ws = add_workspace(db, user.id, 1)
    with trio.fail_after(10):
        async with (
            fake_relay(sock_dir / "r.sock") as fake,
            running_link(db, fake.path) as (link, coord),
        ):
            await link.wait_connected()
            await fake.send({"type": "vm_online", "vmId": vm.id})
            await fake.next("assign")
            await fake.send(b"this is not json")
            await fake.send(b"[1, 2]")
            await fake.send({"no": "type"})
            await fake.send({"type": "something_new"})
            await fake.send({"type": "workspace_status", "workspaceId": ws.id, "status": "bogus"})
            await fake.send({"type": "workspace_status", "workspaceId": ws.id, "status": "running"})
            await fake.send(
                {
                    "type": "audit",
                    "workspaceId": ws.id,
                    "userId": user.id,
                    "action": "permission_response",
                    "requestId": "r1",
                    "allow": False,
                    "at": "2026-01-02T03:04:05.678Z",
                }
            )
            await fake.send(
                {
                    "type": "audit",
                    "workspaceId": ws.id,
                    "sessionId": "side-2",
                    "userId": user.id,
                    "action": "interrupt",
                }
            )
            await fake.send({"type": "audit", "workspaceId": "unknown", "action": "interrupt"})
            await fake.send({"type": "audit"})

            def audit() -> list[store.AuditEntry]:
                return list(db.run_sync(lambda c: store.list_audit(c, ws.id, 10)))

            while len(audit()) < 2:
                await coord.wait_event()
            entry, in_session = audit()
            assert (in_session.action, in_session.session_id) == ("interrupt", "side-2")
            assert entry.session_id is None  # no sessionId: main
            assert (entry.action, entry.user_id, entry.request_id, entry.detail) == (
                "permission_response",
                user.id,
                "r1",
                "denied",
            )
            assert entry.at.isoformat() == "2026-01-02T03:04:05.678000+00:00"
            found = db.run_sync(lambda c: store.get_workspace(c, ws.id))
            assert found is not None
            assert found.status == "running"
            await fake.send({"type": "vm_offline", "vmId": vm.id})

            def status() -> str:
                found = db.run_sync(lambda c: store.get_workspace(c, ws.id))
                assert found is not None
                return found.status

            while status() != "offline":
                await coord.wait_event()
            assert link.connected  # none of that junk cost the connection


async def test_a_revoked_vm_that_comes_online_is_cut_off(sock_dir: Path, db: Database) -> None:
    vm = db.run_sync(lambda c: store.add_vm(c, "vm-a", "none"))
    db.run_sync(lambda c: store.revoke_vm(c, vm.id))
    with trio.fail_after(10):
        async with (
            fake_relay(sock_dir / "r.sock") as fake,
            running_link(db, fake.path) as (link, coord),
        ):
            await link.wait_connected()
            await fake.send({"type": "vm_online", "vmId": vm.id})
            assert (await fake.next("disconnect"))["vmId"] == vm.id
            await fake.send({"type": "vm_online", "vmId": "never-registered"})
            assert (await fake.next("disconnect"))["vmId"] == "never-registered"
            assert coord.online_vms == set()


async def test_revocations_reach_relayd_whole_after_sync_and_on_change(
    sock_dir: Path, db: Database
) -> None:
    alice = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    bob = db.run_sync(lambda c: store.add_user(c, "bob", "h"))
    carol = db.run_sync(lambda c: store.add_user(c, "carol", "h"))
    # Changed while no control plane ran: listed at start. Carol's change is
    # older than the access token lifetime: her old tokens have expired.
    assert db.run_sync(lambda c: store.set_password(c, "alice", "h2"))
    long_ago = utcnow() - dt.timedelta(hours=1)
    db.run_sync(
        lambda c: c.execute(
            users.update().where(users.c.id == carol.id).values(password_changed_at=long_ago)
        )
    )

    def generations(request: dict[str, Any]) -> dict[str, int]:
        return {u["userId"]: u["minGen"] for u in request["users"]}

    async def nothing_more(fake: FakeRelay, link: RelayLink, marker: str) -> None:
        """Two more reconciler passes (each cuts off an unknown VM), and no revoke in them."""
        for name in (f"{marker}-1", f"{marker}-2"):
            await fake.send({"type": "vm_online", "vmId": name})
            assert (await fake.next("disconnect")).get("vmId") == name
        await link.request("stats")
        while True:
            try:
                request = fake.requests.receive_nowait()
            except trio.WouldBlock:
                return
            assert request["type"] != "revoke", request

    with trio.fail_after(10):
        async with (
            fake_relay(sock_dir / "r.sock") as fake,
            running_link(db, fake.path) as (link, coord),
        ):
            await link.wait_connected()
            first = await fake.next("revoke")  # right after the first sync
            assert generations(first) == {alice.id: 1}
            assert first["sessions"] == []
            assert first["vms"] == []
            await nothing_more(fake, link, "a")  # unchanged: not sent again
            assert db.run_sync(lambda c: store.set_password(c, "bob", "h2"))
            session = db.run_sync(lambda c: store.add_session(c, alice, "r1", 60, 3600))
            db.run_sync(lambda c: store.revoke_refresh_token(c, "r1"))  # a logout
            coord.kick()
            second = await fake.next("revoke")
            assert generations(second) == {alice.id: 1, bob.id: 1}  # whole, not a delta
            assert [s["sid"] for s in second["sessions"]] == [session.id]
            await nothing_more(fake, link, "b")
            # relayd says no: the list is sent again on the next pass.
            fake.refuse.add("revoke")
            assert db.run_sync(lambda c: store.set_password(c, "alice", "h3"))
            coord.kick()
            assert generations(await fake.next("revoke"))[alice.id] == 2
            await link.request("stats")  # answered after the refusal, in order
            fake.refuse.clear()
            coord.kick()
            assert generations(await fake.next("revoke"))[alice.id] == 2
            await nothing_more(fake, link, "c")
            # A reconnect: sync, then the whole list again.
            await fake.drop()
            await link.wait_connected(2)
            assert generations(await fake.next("revoke")) == {alice.id: 2, bob.id: 1}


async def test_a_relayd_without_revoke_still_gets_its_sync_and_assignments(
    sock_dir: Path, db: Database
) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    with trio.fail_after(10):
        async with fake_relay(sock_dir / "r.sock") as fake:
            fake.unknown.add("revoke")  # a relayd from before revocation lists
            async with running_link(db, fake.path) as (link, _coord):
                await link.wait_connected()
                assert (await fake.next("revoke"))["type"] == "revoke"
                assert link.connected
                vm = db.run_sync(lambda c: store.add_vm(c, "vm1", "none"))
                ref = IssueRef("octo", "hello", 1)
                db.run_sync(lambda c: store.add_workspace(c, user.id, ref, FetchedIssue()))
                await fake.send({"type": "vm_online", "vmId": vm.id})
                assert (await fake.next("assign"))["vmId"] == vm.id


def test_parse_time_accepts_iso_and_epoch() -> None:
    assert parse_time("2026-01-02T03:04:05Z").year == 2026
    assert parse_time(1_767_323_045).year == 2026
    assert parse_time(1_767_323_045_000).year == 2026
    assert parse_time("garbage").tzinfo is not None
    assert parse_time(None).tzinfo is not None


def test_a_sync_too_long_for_relayd_goes_without_issue_bodies(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    vm = db.run_sync(lambda c: store.add_vm(c, "vm-a", "none"))
    ref = IssueRef("octo", "hello", 1)
    db.run_sync(lambda c: store.add_workspace(c, user.id, ref, FetchedIssue("T", "x" * 5000)))
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, True))
    placed = db.run_sync(store.place_pending)
    assert sync_entries(placed)[0]["issue"]["body"] == "x" * 5000
    monkeypatch.setattr(coordinator_module, "MAX_SYNC_BYTES", 1000)
    entry = sync_entries(placed)[0]
    assert "body" not in entry["issue"]
    assert entry["issue"]["title"] == "T"

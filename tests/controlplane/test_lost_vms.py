"""A VM that never returns: after ``--vm-lost-after`` its workspaces go to another VM."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trio

from controlplane import lost, store
from controlplane.db import Database, utcnow
from controlplane.issues import FetchedIssue, IssueRef
from controlplane.schema import vms
from tests.controlplane.test_integration import ISSUE, _vm_token, login, stack
from tests.support.fake_github import FakeGitHub
from tests.support.relayd import recv_until, send_json
from tests.support.waiting import wait_until


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="lost-", dir="/tmp") as path:
        yield Path(path)


def test_only_workspaces_of_vms_away_long_enough_are_given_up(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path / 'cp.db'}")
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))

    def add_vm(name: str) -> store.Vm:
        return db.run_sync(lambda c: store.add_vm(c, name, "none"))

    def set_online(vm_id: str, online: bool) -> None:
        db.run_sync(lambda c: store.set_vm_online(c, vm_id, online))

    def workspace(workspace_id: str) -> store.Workspace | None:
        return db.run_sync(lambda c: store.get_workspace(c, workspace_id))

    made = {n: add_vm(n) for n in ("gone", "back-soon", "online")}
    placed = {}
    for name, vm in made.items():
        set_online(vm.id, True)
        ws = db.run_sync(
            lambda c: store.add_workspace(c, user.id, IssueRef("o", "r", 1), FetchedIssue())
        )
        db.run_sync(store.place_pending)
        placed[name] = ws.id
        if name != "online":
            set_online(vm.id, False)
    long_ago = utcnow() - dt.timedelta(hours=2)
    db.run_sync(
        lambda c: c.execute(
            vms.update().where(vms.c.id == made["gone"].id).values(last_seen_at=long_ago)
        )
    )
    assert db.run_sync(lambda c: lost.give_up_on_lost_vms(c, 3600)) == [placed["gone"]]
    gone = workspace(placed["gone"])
    assert gone is not None
    assert (gone.vm_id, gone.status) == (None, "provisioning")
    assert gone.lost_at is not None
    for name in ("back-soon", "online"):
        kept = workspace(placed[name])
        assert kept is not None
        assert kept.vm_id == made[name].id
        assert kept.lost_at is None
    # Once given up, not again.
    assert db.run_sync(lambda c: lost.give_up_on_lost_vms(c, 3600)) == []
    db.close()


async def test_a_vm_that_never_returns_loses_its_workspace_to_another(
    short_tmp: Path, github: FakeGitHub
) -> None:
    with trio.fail_after(60):
        async with stack(
            short_tmp, github, provisioner="none", vm_lost_after=0.5, reconcile_interval=0.1
        ) as (running, relay, http):
            services = running.services
            services.coordinator.lost_grace = 0.0
            first = await services.db.run(lambda c: store.add_vm(c, "first", "none"))
            second = await services.db.run(lambda c: store.add_vm(c, "second", "none"))
            token, _user = await login(http)
            headers = {"Authorization": f"Bearer {token}"}
            ws = (
                await http.post("/api/workspaces", json={"issueUrl": ISSUE}, headers=headers)
            ).json()
            hello = {"type": "hello", "agentVersion": "t", "workspaces": []}
            async with relay.connect_vm(first.id, token=_vm_token(running, first.id)) as conn:
                await send_json(conn, {**hello, "vmId": first.id})
                got = await recv_until(conn, lambda m: m["type"] == "workspace_assigned")
                assert got[-1]["workspaceId"] == ws["id"]

            async def shown() -> dict[str, str]:
                body: dict[str, str] = (
                    await http.get(f"/api/workspaces/{ws['id']}", headers=headers)
                ).json()
                return body

            async def status_is(wanted: str) -> bool:
                return (await shown())["status"] == wanted

            # The first VM is gone; while it might come back, the workspace waits.
            await wait_until(partial(status_is, "offline"))
            assert "lostAt" not in await shown()
            async with relay.connect_vm(second.id, token=_vm_token(running, second.id)) as conn:
                await send_json(conn, {**hello, "vmId": second.id})
                # After vm_lost_after, it goes to the VM that is there.
                got = await recv_until(conn, lambda m: m["type"] == "workspace_assigned")
                assert got[-1]["workspaceId"] == ws["id"]
                body = await shown()
                assert body["vmId"] == second.id
                assert body["lostAt"]

"""The local provisioner with a stand-in vmagent (a shell script): its command
line, its token file, restarts, and token renewal."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from controlplane import provisioner as provisioner_module
from controlplane import store
from controlplane.db import Database
from controlplane.keys import KeyRing
from controlplane.provisioner import LocalProvisioner
from tests.support.waiting import wait_until
from wire.protocol import Scope


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(f"sqlite:///{tmp_path / 'cp.db'}")
    yield database
    database.close()


def make_provisioner(tmp_path: Path, db: Database, script: str, ttl: float) -> LocalProvisioner:
    keyring = KeyRing(tmp_path / "state")
    keyring.load()
    fake = tmp_path / "fake-vmagent"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    return LocalProvisioner(
        db,
        vms_dir=tmp_path / "vms",
        count=1,
        relay_url="ws://127.0.0.1:1",
        engine="demo",
        signing_key=lambda: keyring.signing_key,
        issuer="ffcloud",
        token_ttl=ttl,
        command=str(fake),
    )


async def test_a_vmagent_that_exits_is_started_again_with_its_token(
    tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provisioner_module, "RESTART_BACKOFF_START", 0.01)
    calls = tmp_path / "calls"
    provisioner = make_provisioner(tmp_path, db, f'echo "$@" >> {calls}\nexit 3\n', ttl=3600)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(provisioner.run)
            # Each start runs a child process that exits: no event marks the count.
            await wait_until(lambda: provisioner.starts.get("local-1", 0) >= 3)
            nursery.cancel_scope.cancel()
    vm = db.run_sync(lambda c: store.find_vm(c, "local-1"))
    assert vm is not None
    assert vm.provisioner == "local"
    first = calls.read_text().splitlines()[0].split()
    home = tmp_path / "vms" / "local-1"
    assert first == [
        "--relay-url",
        "ws://127.0.0.1:1",
        "--token-file",
        str(home / "token"),
        "--state-dir",
        str(home / "state"),
        "--engine",
        "demo",
        "--no-clone",
    ]
    assert stat.S_IMODE((home / "token").stat().st_mode) == 0o600
    keyring = KeyRing(tmp_path / "state")
    keyring.load()
    claims = keyring.verifier("ffcloud").verify((home / "token").read_text(), scope=Scope.VM)
    assert claims.sub == vm.id


async def test_the_token_is_renewed_while_the_vmagent_runs(tmp_path: Path, db: Database) -> None:
    provisioner = make_provisioner(tmp_path, db, "exec sleep 1000\n", ttl=0.2)
    token_file = tmp_path / "vms" / "local-1" / "token"
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(provisioner.run)
            await provisioner.running["local-1"].wait()
            first = token_file.read_text()
            # Renewal runs every 0.1 s; look at the count as it goes.
            await wait_until(lambda: provisioner.tokens_written["local-1"] >= 3)
            assert token_file.read_text() != first
            assert provisioner.starts == {"local-1": 1}  # renewed, not restarted
            nursery.cancel_scope.cancel()


async def test_a_revoked_local_vm_is_not_started(tmp_path: Path, db: Database) -> None:
    provisioner = make_provisioner(tmp_path, db, "exit 0\n", ttl=3600)
    vm = db.run_sync(lambda c: store.add_vm(c, "local-1", "local"))
    db.run_sync(lambda c: store.revoke_vm(c, vm.id))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(provisioner.run)
    assert provisioner.starts == {}

"""The operator guide's backup commands, run against a live control plane database.

The two ``sqlite3`` command lines are taken from docs/operations.md (minus
``setpriv``, and with the test's paths) and run with the sqlite3 CLI while
another connection holds an open write transaction, as the running service
may. The copy must be whole, consistent (without the unfinished write), and
usable by the control plane after a restore.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from controlplane import store
from controlplane.db import Database, create_engine
from tests.ops.units import ROOT

LIVE_DB = "/var/lib/ffcloud-controlplane/controlplane.db"


def _documented_commands() -> list[list[str]]:
    """The guide's backup command lines, as argv lists."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("\n## Backups and restore\n", 1)[1].split("\n## ", 1)[0]
    prefix = r"setpriv --reuid=ffcloud-controlplane --regid=ffcloud --clear-groups -- "
    lines = re.findall(rf"^{prefix}(sqlite3 .+)$", section, re.M)
    return [shlex.split(line) for line in lines]


def _hash() -> str:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")


def test_guide_names_both_ways() -> None:
    commands = _documented_commands()
    assert [argv[2].split()[0] for argv in commands] == [".backup", "VACUUM"]
    assert all(argv[:2] == ["sqlite3", LIVE_DB] for argv in commands)


@pytest.mark.parametrize("index", [0, 1], ids=["backup", "vacuum-into"])
def test_backup_of_a_live_database_restores(tmp_path: Path, index: int) -> None:
    assert shutil.which("sqlite3"), "sqlite3 is missing: apt-get install sqlite3"
    state = tmp_path / "state"
    state.mkdir()
    live = state / "controlplane.db"
    db = Database.open(f"sqlite:///{live}")
    db.run_sync(lambda c: store.add_user(c, "alice", _hash()))

    backups = tmp_path / "backups"
    backups.mkdir()
    argv = _documented_commands()[index]
    argv[1] = str(live)
    # Another connection is in the middle of a write, as the service may be.
    writer = create_engine(f"sqlite:///{live}")
    with writer.connect() as busy:
        store.add_user(busy, "unfinished", _hash())
        proc = subprocess.run(
            argv, cwd=backups, capture_output=True, text=True, timeout=60, check=False
        )
        busy.rollback()
    writer.dispose()
    db.close()
    assert proc.returncode == 0, proc.stderr
    [copy] = list(backups.iterdir())

    check = subprocess.run(
        ["sqlite3", str(copy), "PRAGMA integrity_check;"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert check.stdout.strip() == "ok"

    # Restore into a fresh state directory, as the guide does, and use it.
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    shutil.copy(copy, restored_dir / "controlplane.db")
    restored = Database.open(f"sqlite:///{restored_dir / 'controlplane.db'}")
    try:
        assert restored.run_sync(lambda c: store.user_credentials(c, "alice")) is not None
        assert restored.run_sync(lambda c: store.user_credentials(c, "unfinished")) is None
        restored.run_sync(lambda c: store.add_user(c, "bob", _hash()))
    finally:
        restored.close()

"""The database layer: migrations, SQLite settings, and the units of work."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from controlplane import loginlimits, store
from controlplane.db import Database, alembic_config, create_engine
from controlplane.issues import FetchedIssue, IssueRef
from controlplane.schema import metadata, sessions
from controlplane.throttle import Policy, keys_for


def test_migrations_create_exactly_the_schema(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrating_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    Database.open(url).close()
    again = Database.open(url)
    assert (
        again.run_sync(lambda c: c.execute(sa.text("SELECT count(*) FROM users")).scalar_one()) == 0
    )
    again.close()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path / 'wal.db'}")
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar_one() == 1
    db.close()


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        db.run_sync(lambda c: store.add_refresh_token(c, "no-such-user", "token", ttl=60))


async def test_work_runs_in_a_worker_thread(db: Database) -> None:
    user = await db.run(lambda c: store.add_user(c, "alice", "hash"))
    assert await db.run(lambda c: store.get_user(c, user.id)) == user
    await db.ping()


def test_user_names_are_unique(db: Database) -> None:
    db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    with pytest.raises(store.AlreadyExists):
        db.run_sync(lambda c: store.add_user(c, "alice", "h"))


def test_refresh_tokens_rotate_once_and_reuse_revokes_the_family(db: Database) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    db.run_sync(lambda c: store.add_session(c, user, "t1", ttl=60, max_age=3600))
    rotated = db.run_sync(lambda c: store.rotate_refresh_token(c, "t1", "t2", 60))
    assert rotated is not None
    assert rotated.user == user
    # t1 is spent: presenting it again is theft, and t2 dies with it.
    assert db.run_sync(lambda c: store.rotate_refresh_token(c, "t1", "t3", 60)) is None
    assert db.run_sync(lambda c: store.rotate_refresh_token(c, "t2", "t4", 60)) is None
    assert db.run_sync(lambda c: store.rotate_refresh_token(c, "unknown", "t5", 60)) is None


def test_expired_and_revoked_refresh_tokens_are_refused(db: Database) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    db.run_sync(lambda c: store.add_refresh_token(c, user.id, "old", ttl=-1))
    assert db.run_sync(lambda c: store.rotate_refresh_token(c, "old", "new", 60)) is None
    db.run_sync(lambda c: store.add_session(c, user, "live", ttl=60, max_age=3600))
    db.run_sync(lambda c: store.revoke_refresh_token(c, "live"))
    assert db.run_sync(lambda c: store.rotate_refresh_token(c, "live", "new2", 60)) is None
    # Only hashes are stored.
    stored = db.run_sync(
        lambda c: [r[0] for r in c.execute(sa.text("SELECT token_hash FROM refresh_tokens"))]
    )
    assert "live" not in stored
    assert store.token_hash("live") in stored


def test_a_password_change_ends_refresh_sessions_and_is_dated(db: Database) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    bob = db.run_sync(lambda c: store.add_user(c, "bob", "h"))
    db.run_sync(lambda c: store.add_session(c, user, "live", ttl=60, max_age=3600))
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    assert db.run_sync(_changes_since(before)) == {}
    assert db.run_sync(lambda c: store.set_password(c, "alice", "h2"))
    assert not db.run_sync(lambda c: store.set_password(c, "nobody", "h2"))
    changes = db.run_sync(_changes_since(before))
    assert list(changes) == [user.id]  # bob's password did not change
    assert bob.id not in changes
    assert before < changes[user.id] <= dt.datetime.now(dt.UTC)
    # Only changes after `since` are listed.
    later = changes[user.id] + dt.timedelta(microseconds=1)
    assert db.run_sync(_changes_since(later)) == {}
    assert db.run_sync(lambda c: store.rotate_refresh_token(c, "live", "new", 60)) is None


def test_a_session_ends_at_its_absolute_end_however_often_refreshed(db: Database) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    session = db.run_sync(lambda c: store.add_session(c, user, "t1", ttl=60, max_age=0.5))
    assert session.expires_at <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    db.run_sync(
        lambda c: c.execute(
            sessions.update()
            .where(sessions.c.id == session.id)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    )
    assert db.run_sync(lambda c: store.rotate_refresh_token(c, "t1", "t2", 60)) is None
    assert db.run_sync(lambda c: store.access_allowed(c, user.id, session.id, 0)) is None


def test_access_needs_a_live_session_and_the_current_generation(db: Database) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    bob = db.run_sync(lambda c: store.add_user(c, "bob", "h"))
    session = db.run_sync(lambda c: store.add_session(c, user, "t1", ttl=60, max_age=3600))
    assert session.gen == 0
    assert db.run_sync(lambda c: store.access_allowed(c, user.id, session.id, 0)) == user
    assert db.run_sync(lambda c: store.access_allowed(c, bob.id, session.id, 0)) is None
    assert db.run_sync(lambda c: store.access_allowed(c, user.id, None, None)) is None
    assert db.run_sync(lambda c: store.set_password(c, "alice", "h2"))
    assert db.run_sync(lambda c: store.access_allowed(c, user.id, session.id, 0)) is None
    again = db.run_sync(lambda c: store.add_session(c, user, "t9", ttl=60, max_age=3600))
    assert again.gen == 1
    assert db.run_sync(lambda c: store.access_allowed(c, user.id, again.id, 1)) == user
    assert db.run_sync(lambda c: store.revoke_refresh_token(c, "t9")) == again.id
    assert db.run_sync(lambda c: store.access_allowed(c, user.id, again.id, 1)) is None


def test_the_password_migration_keeps_existing_users(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(
            sa.text(
                "INSERT INTO users (id, username, password_hash, created_at)"
                " VALUES ('u1', 'alice', 'h', '2026-01-01 00:00:00')"
            )
        )
    engine.dispose()
    db = Database.open(url)  # migrates to the head
    since = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert db.run_sync(_changes_since(since)) == {}
    assert db.run_sync(lambda c: store.set_password(c, "alice", "h2"))
    assert list(db.run_sync(_changes_since(since))) == ["u1"]
    db.close()
    # And back: the column goes, the users stay.
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
        columns = {col["name"] for col in sa.inspect(conn).get_columns("users")}
        assert "password_changed_at" not in columns
        assert conn.execute(sa.text("SELECT username FROM users")).scalars().all() == ["alice"]
    engine.dispose()


def _changes_since(since: dt.datetime) -> Callable[[sa.Connection], dict[str, dt.datetime]]:
    return lambda c: store.password_changes_since(c, since)


def _workspace(db: Database, user_id: str, number: int) -> store.Workspace:
    ref = IssueRef("octo", "repo", number)
    return db.run_sync(lambda c: store.add_workspace(c, user_id, ref, FetchedIssue(title="T")))


def test_placement_goes_to_the_least_loaded_online_vm(db: Database) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    a = db.run_sync(lambda c: store.add_vm(c, "a", "none"))
    b = db.run_sync(lambda c: store.add_vm(c, "b", "none"))
    first = _workspace(db, user.id, 1)
    assert first.status == store.PROVISIONING
    assert db.run_sync(store.place_pending) == []  # nobody online: it waits
    db.run_sync(lambda c: store.set_vm_online(c, a.id, True))
    placed = db.run_sync(store.place_pending)
    assert [(w.id, w.vm_id) for w in placed] == [(first.id, a.id)]
    db.run_sync(lambda c: store.set_vm_online(c, b.id, True))
    second = _workspace(db, user.id, 2)
    third = _workspace(db, user.id, 3)
    placed = db.run_sync(store.place_pending)
    assert {w.id: w.vm_id for w in placed} == {second.id: b.id, third.id: min(a.id, b.id)}


def test_status_is_derived_from_the_vm_and_its_reports(db: Database) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    vm = db.run_sync(lambda c: store.add_vm(c, "a", "none"))
    ws = _workspace(db, user.id, 1)
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, True))
    db.run_sync(store.place_pending)

    def status() -> str:
        found = db.run_sync(lambda c: store.get_workspace(c, ws.id))
        assert found is not None
        return found.status

    assert status() == "provisioning"
    assert db.run_sync(lambda c: store.set_reported_status(c, ws.id, "idle"))
    assert status() == "idle"
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, False))
    assert status() == "offline"
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, True))
    assert status() == "idle"
    assert db.run_sync(lambda c: store.delete_workspace(c, ws.id, user.id)) is not None
    assert status() == "deleted"
    assert not db.run_sync(lambda c: store.set_reported_status(c, ws.id, "running"))
    assert db.run_sync(lambda c: store.list_workspaces(c, user.id)) == []
    assert db.run_sync(lambda c: store.delete_workspace(c, ws.id, user.id)) is None


def test_revoking_a_vm_sends_its_workspaces_back_to_placement(db: Database) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    vm = db.run_sync(lambda c: store.add_vm(c, "a", "none"))
    db.run_sync(lambda c: store.set_vm_online(c, vm.id, True))
    ws = _workspace(db, user.id, 1)
    db.run_sync(store.place_pending)
    assert [w.id for w in db.run_sync(store.assignments)] == [ws.id]
    assert db.run_sync(lambda c: store.revoke_vm(c, vm.id)) == [ws.id]
    assert db.run_sync(store.assignments) == []
    # A revoked VM never comes back online.
    back = db.run_sync(lambda c: store.set_vm_online(c, vm.id, True))
    assert back is not None
    assert back.revoked
    assert not back.online
    assert db.run_sync(store.place_pending) == []


def test_audit_is_kept_per_workspace_in_order(db: Database) -> None:
    user = db.run_sync(lambda c: store.add_user(c, "alice", "h"))
    ws = _workspace(db, user.id, 1)
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for action in ("permission_response", "interrupt"):

        def add(c: sa.Connection, action: str = action) -> bool:
            return store.add_audit(c, ws.id, user.id, action, "r1", at)

        assert db.run_sync(add)
    assert not db.run_sync(lambda c: store.add_audit(c, "nope", user.id, "interrupt", None, at))
    entries = db.run_sync(lambda c: store.list_audit(c, ws.id, limit=10))
    assert [e.action for e in entries] == ["permission_response", "interrupt"]
    assert entries[0].at == at


async def test_parallel_login_reservations_pass_only_the_free_ones(db: Database) -> None:
    """On PostgreSQL the reservations run in several threads at once (row locks decide)."""
    policy = Policy(pair_free=5, account_free=20, window=300, max_delay=60)
    pair, account = keys_for("alice", "192.0.2.7")
    waits: list[float] = []

    async def one() -> None:
        waits.append(await loginlimits.reserve(db, pair, account, 1000.0, policy))

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(one)
    assert waits.count(0.0) == 5
    assert db.run_sync(lambda c: loginlimits.attempts_of(c, pair)) == 5

"""The purge of ended rows (controlplane/purge.py), on SQLite and on PostgreSQL.

What must hold: exactly the rows that ended more than the retention period
ago go (a hypothesis property over row ages); a live login and its live
refresh tokens stay whatever the period; the revocation list relayd gets is
the same before and after any purge, so no token that could still verify is
un-revoked; batches and concurrent purgers delete each row once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane import revocation, store
from controlplane.db import Database
from controlplane.main import build_parser, settings_from
from controlplane.purge import Purger, cutoff
from controlplane.schema import login_attempts, refresh_tokens, removed_users, sessions
from tests.support.waiting import wait_until
from wire.tokens import DEFAULT_LEEWAY

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
DAY = 24 * 3600.0
TTL = 900.0
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def purger(db: Database, purge_after: float, **kw: Any) -> Purger:
    return Purger(
        db,
        interval=3600,
        purge_after=purge_after,
        access_token_ttl=TTL,
        login_window=300,
        clock=lambda: NOW.timestamp(),
        now=lambda: NOW,
        **kw,
    )


def at(seconds_ago: float | None) -> dt.datetime | None:
    return None if seconds_ago is None else NOW - dt.timedelta(seconds=seconds_ago)


def clear(conn: sa.Connection) -> str:
    """An empty database with one user; returns the user's id."""
    for table in (refresh_tokens, sessions, removed_users, login_attempts):
        conn.execute(table.delete())
    conn.execute(sa.text("DELETE FROM users"))
    return store.add_user(conn, "alice", "x").id


def add_session(
    conn: sa.Connection, user_id: str, sid: str, expired_ago: float, revoked_ago: float | None
) -> None:
    conn.execute(
        sessions.insert().values(
            id=sid,
            user_id=user_id,
            created_at=NOW - dt.timedelta(days=400),
            expires_at=at(expired_ago),
            revoked_at=at(revoked_ago),
        )
    )


def add_token(
    conn: sa.Connection, user_id: str, tid: str, expired_ago: float, revoked_ago: float | None
) -> None:
    conn.execute(
        refresh_tokens.insert().values(
            id=tid,
            user_id=user_id,
            family_id=tid,
            token_hash=store.token_hash(tid),
            created_at=NOW - dt.timedelta(days=400),
            expires_at=at(expired_ago),
            revoked_at=at(revoked_ago),
        )
    )


def ids(conn: sa.Connection, column: sa.Column[Any]) -> set[str]:
    return {r[0] for r in conn.execute(sa.select(column))}


# Ages in whole seconds (no rounding at the boundary): negative is in the
# future (a live session or token).
ages = st.one_of(
    st.integers(-100 * int(DAY), 100 * int(DAY)).map(float),
    st.sampled_from([0.0, TTL, TTL + DEFAULT_LEEWAY, TTL + DEFAULT_LEEWAY + 1, 30 * DAY, -1.0]),
)
rows = st.lists(st.tuples(ages, st.none() | ages), max_size=8)


@PROPERTY
@given(
    session_rows=rows,
    token_rows=rows,
    removed=st.lists(ages.map(abs), max_size=4),
    purge_after=st.sampled_from([0.0, 60.0, TTL, DAY, 30 * DAY])
    | st.integers(0, 60 * int(DAY)).map(float),
)
async def test_exactly_the_rows_ended_before_the_cutoff_go(
    db: Database,
    session_rows: list[tuple[float, float | None]],
    token_rows: list[tuple[float, float | None]],
    removed: list[float],
    purge_after: float,
) -> None:
    def setup(c: sa.Connection) -> None:
        user_id = clear(c)
        for i, (expired, revoked) in enumerate(session_rows):
            add_session(c, user_id, f"s{i}", expired, revoked)
        for i, (expired, revoked) in enumerate(token_rows):
            add_token(c, user_id, f"t{i}", expired, revoked)
        for i, ago in enumerate(removed):
            c.execute(removed_users.insert().values(id=f"r{i}", removed_at=at(ago)))

    db.run_sync(setup)
    listed_before = db.run_sync(lambda c: revocation.build(c, TTL, NOW))
    purged = await purger(db, purge_after, batch=3).purge_once()

    keep = max(purge_after, TTL + DEFAULT_LEEWAY)

    def ended(expired: float, revoked: float | None) -> bool:
        return expired > keep or (revoked is not None and revoked > keep)

    assert db.run_sync(lambda c: ids(c, sessions.c.id)) == {
        f"s{i}" for i, row in enumerate(session_rows) if not ended(*row)
    }
    assert db.run_sync(lambda c: ids(c, refresh_tokens.c.id)) == {
        f"t{i}" for i, row in enumerate(token_rows) if not ended(*row)
    }
    assert db.run_sync(lambda c: ids(c, removed_users.c.id)) == {
        f"r{i}" for i, ago in enumerate(removed) if ago <= keep
    }
    assert purged.sessions == sum(ended(*row) for row in session_rows)
    # Nothing relayd must still refuse was forgotten: an entry may only drop
    # out for a login whose end (which caps its access tokens) is past the leeway
    # (revoked after it expired: a password change revokes expired logins too).
    listed_after = db.run_sync(lambda c: revocation.build(c, TTL, NOW))
    assert (listed_after.users, listed_after.vms) == (listed_before.users, listed_before.vms)
    expired = {f"s{i}": row[0] for i, row in enumerate(session_rows)}
    for sid in set(listed_before.sessions) - set(listed_after.sessions):
        assert expired[sid] > DEFAULT_LEEWAY, sid
    assert set(listed_after.sessions) <= set(listed_before.sessions)


async def test_a_live_login_and_its_tokens_stay_even_with_no_retention(db: Database) -> None:
    def login(c: sa.Connection) -> tuple[store.Session, str]:
        user = store.add_user(c, "bob", "x")
        session = store.add_session(c, user, "refresh-1", ttl=DAY, max_age=90 * DAY)
        return session, user.id

    session, user_id = db.run_sync(login)
    # Ended long ago: these go.
    db.run_sync(lambda c: add_session(c, user_id, "old", 40 * DAY, None))
    db.run_sync(lambda c: add_token(c, user_id, "old-token", 40 * DAY, None))
    gone = await Purger(
        db, interval=1, purge_after=0, access_token_ttl=TTL, login_window=300
    ).purge_once()
    assert (gone.sessions, gone.refresh_tokens) == (1, 1)
    assert db.run_sync(lambda c: store.access_allowed(c, user_id, session.id, session.gen))
    rotated = db.run_sync(lambda c: store.rotate_refresh_token(c, "refresh-1", "refresh-2", DAY))
    assert rotated is not None
    assert rotated.id == session.id


async def test_a_logout_stays_listed_for_relayd_until_its_tokens_expire(db: Database) -> None:
    def setup(c: sa.Connection) -> str:
        user_id = clear(c)
        add_session(c, user_id, "just-out", -DAY, TTL)  # revoked 15 minutes ago
        add_session(c, user_id, "long-out", -DAY, TTL + DEFAULT_LEEWAY + 1)
        return user_id

    db.run_sync(setup)
    await purger(db, 0).purge_once()  # retention 0 is raised to the token lifetime
    assert db.run_sync(lambda c: ids(c, sessions.c.id)) == {"just-out"}
    listed = db.run_sync(lambda c: revocation.build(c, TTL, NOW))
    assert set(listed.sessions) == {"just-out"}
    assert listed.sessions["just-out"] > NOW.timestamp()


async def test_quiet_login_counts_go(db: Database) -> None:
    def setup(c: sa.Connection) -> None:
        clear(c)
        for key, quiet in (("pair:a|1", 301.0), ("acct:a", 299.0)):
            last = NOW.timestamp() - quiet
            c.execute(login_attempts.insert().values(key=key, attempts=3, last_at=last, next_at=0))

    db.run_sync(setup)
    purged = await purger(db, 30 * DAY).purge_once()
    assert purged.login_keys == 1
    assert db.run_sync(lambda c: ids(c, login_attempts.c.key)) == {"acct:a"}


async def test_concurrent_purgers_delete_each_row_once(db: Database) -> None:
    count = 60

    def setup(c: sa.Connection) -> None:
        user_id = clear(c)
        for i in range(count):
            add_session(c, user_id, f"s{i:03}", 40 * DAY, None)
            add_token(c, user_id, f"t{i:03}", 40 * DAY, 40 * DAY)

    db.run_sync(setup)
    results: list[Any] = []

    async def one() -> None:
        results.append(await purger(db, 30 * DAY, batch=4).purge_once())

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(one)
    # A purger that met another's locked rows stops early; one more finishes the job.
    results.append(await purger(db, 30 * DAY, batch=4).purge_once())
    assert sum(r.sessions for r in results) == count
    assert sum(r.refresh_tokens for r in results) == count
    assert db.run_sync(lambda c: ids(c, sessions.c.id) | ids(c, refresh_tokens.c.id)) == set()


async def test_the_task_purges_at_start_and_stops_when_cancelled(db: Database) -> None:
    def setup(c: sa.Connection) -> None:
        user_id = clear(c)
        add_session(c, user_id, "old", 40 * DAY, None)

    db.run_sync(setup)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(purger(db, 30 * DAY).run)
        with trio.fail_after(10):
            await wait_until(lambda: not db.run_sync(lambda c: ids(c, sessions.c.id)))
        nursery.cancel_scope.cancel()


async def test_interval_zero_never_purges(db: Database) -> None:
    db.run_sync(lambda c: add_session(c, clear(c), "old", 40 * DAY, None))
    task = Purger(db, interval=0, purge_after=0, access_token_ttl=TTL, login_window=300)
    with trio.fail_after(5):
        await task.run()  # returns at once
    assert db.run_sync(lambda c: ids(c, sessions.c.id)) == {"old"}


def test_the_cutoff_is_never_inside_an_access_tokens_life() -> None:
    assert cutoff(NOW, 0, TTL) == NOW - dt.timedelta(seconds=TTL + DEFAULT_LEEWAY)
    assert cutoff(NOW, 30 * DAY, TTL) == NOW - dt.timedelta(days=30)
    assert cutoff(NOW, -5, 0) == NOW - dt.timedelta(seconds=DEFAULT_LEEWAY)


def test_purge_settings_are_read_and_checked() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--purge-after", "86400", "--purge-batch", "10"])
    got = settings_from(args, {"CONTROLPLANE_PURGE_INTERVAL": "60"})
    assert (got.purge_after, got.purge_batch, got.purge_interval) == (86400.0, 10, 60.0)
    with pytest.raises(SystemExit, match="purge-batch"):
        settings_from(parser.parse_args(["serve", "--purge-batch", "0"]), {})

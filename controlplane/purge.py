"""Deleting what has ended: old login sessions, refresh tokens, removed users, login counts.

A row goes once its end (a session's or refresh token's expiry or
revocation, a user's removal) lies more than the retention period
(``--purge-after``) in the past. The period is never shorter than an access
token can live past that end (``access_token_ttl`` plus relayd's clock
leeway): the revocation list (:mod:`controlplane.revocation`) lists an ended
session or a removed user for exactly that long, and a row deleted sooner
would drop out of it and make its still-verifying access tokens good again
at relayd. Login counts (:mod:`controlplane.loginlimits`) go once quiet for
``login_failure_window``, as a reservation would forget them.

Rows go in batches of ``batch``, each batch its own short transaction, so the
API and the reconciler are never held up for long. Several control planes on
one PostgreSQL may purge at once: a batch takes its rows ``FOR UPDATE SKIP
LOCKED`` (another purger's rows are skipped, never waited for) and deletes
only rows that still match, so nothing is deleted twice and no purger blocks
on another. No batch that would find nothing issues a ``DELETE`` (on
PostgreSQL every ``DELETE`` on ``sessions`` or ``removed_users`` notifies
every node's reconciler).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Final

import attrs
import sqlalchemy as sa
import trio
import trio.lowlevel

from controlplane.db import Database, utcnow
from controlplane.schema import login_attempts, refresh_tokens, removed_users, sessions
from wire.tokens import DEFAULT_LEEWAY

log = logging.getLogger(__name__)

#: Default rows deleted per transaction (``--purge-batch``).
PURGE_BATCH: Final = 500


def cutoff(now: dt.datetime, purge_after: float, access_token_ttl: float) -> dt.datetime:
    """Rows that ended before this moment may go.

    Never later than ``now`` minus an access token's lifetime and the
    leeway, whatever ``purge_after`` says (see the module docstring).
    """
    keep = max(purge_after, access_token_ttl + DEFAULT_LEEWAY, 0.0)
    return now - dt.timedelta(seconds=keep)


def _ended_sessions(cut: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.or_(sessions.c.expires_at < cut, sessions.c.revoked_at < cut)


def _ended_refresh_tokens(cut: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.or_(refresh_tokens.c.expires_at < cut, refresh_tokens.c.revoked_at < cut)


def _delete_batch(
    conn: sa.Connection,
    key: sa.Column[str],
    condition: sa.ColumnElement[bool],
    batch: int,
) -> int:
    """Delete up to ``batch`` rows matching ``condition``; returns how many went."""
    table = key.table
    assert isinstance(table, sa.Table)
    # SQLite has no FOR UPDATE (its one writer needs none); SQLAlchemy leaves it out there.
    found = [
        row[0]
        for row in conn.execute(
            sa.select(key)
            .where(condition)
            .order_by(key)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ]
    if not found:
        return 0
    # The condition again: a row may have changed between the two statements.
    result = conn.execute(table.delete().where(key.in_(found), condition))
    return int(result.rowcount)


def delete_ended_sessions(conn: sa.Connection, cut: dt.datetime, batch: int) -> int:
    """One batch of sessions that expired or were revoked before ``cut``."""
    return _delete_batch(conn, sessions.c.id, _ended_sessions(cut), batch)


def delete_ended_refresh_tokens(conn: sa.Connection, cut: dt.datetime, batch: int) -> int:
    """One batch of refresh tokens that expired or were revoked before ``cut``.

    A token's own end counts, not its session's: a token past its expiry
    gives no new one, whatever its session, so a long session sheds the
    tokens it rotated away long ago.
    """
    return _delete_batch(conn, refresh_tokens.c.id, _ended_refresh_tokens(cut), batch)


def delete_removed_users(conn: sa.Connection, cut: dt.datetime, batch: int) -> int:
    """One batch of removed users' entries older than ``cut`` (their tokens have expired)."""
    return _delete_batch(conn, removed_users.c.id, removed_users.c.removed_at < cut, batch)


def delete_quiet_login_keys(conn: sa.Connection, quiet_since: float, batch: int) -> int:
    """One batch of login-throttling keys with no attempt since ``quiet_since`` (epoch seconds)."""
    return _delete_batch(conn, login_attempts.c.key, login_attempts.c.last_at <= quiet_since, batch)


@attrs.frozen
class Purged:
    """Rows one purge deleted, per kind."""

    sessions: int = 0
    refresh_tokens: int = 0
    removed_users: int = 0
    login_keys: int = 0

    @property
    def total(self) -> int:
        """Every row deleted."""
        return self.sessions + self.refresh_tokens + self.removed_users + self.login_keys


@attrs.define
class Purger:
    """The purge task: one pass at start, then every ``interval`` seconds (0: never)."""

    db: Database
    #: Seconds between passes; 0 turns purging off.
    interval: float
    #: Seconds an ended row is kept (raised to the access token's lifetime and leeway).
    purge_after: float
    access_token_ttl: float
    #: Quiet seconds after which a login-throttling key is forgotten.
    login_window: float
    batch: int = PURGE_BATCH
    #: Epoch seconds, the clock login counts are kept in (``Services.clock``).
    clock: Callable[[], float] = time.time
    #: The wall clock of the sessions' times.
    now: Callable[[], dt.datetime] = utcnow

    async def run(self) -> None:
        """Purge now and every ``interval`` seconds, until cancelled."""
        if self.interval <= 0:
            return
        while True:
            try:
                purged = await self.purge_once()
            except Exception:
                # E.g. the database away: the next pass tries again.
                log.exception("purge failed")
            else:
                if purged.total:
                    log.info("ended rows purged", extra=attrs.asdict(purged))
            await trio.sleep(self.interval)

    async def purge_once(self) -> Purged:
        """Delete every ended row past the retention period, batch by batch.

        Cancellation-safe: each batch commits or rolls back whole, and a
        cancelled purge leaves only rows the next one deletes.
        """
        cut = cutoff(self.now(), self.purge_after, self.access_token_ttl)
        quiet_since = self.clock() - self.login_window
        return Purged(
            sessions=await self._drain(partial(delete_ended_sessions, cut=cut)),
            refresh_tokens=await self._drain(partial(delete_ended_refresh_tokens, cut=cut)),
            removed_users=await self._drain(partial(delete_removed_users, cut=cut)),
            login_keys=await self._drain(partial(delete_quiet_login_keys, quiet_since=quiet_since)),
        )

    async def _drain(self, work: Callable[..., int]) -> int:
        batch = max(1, self.batch)
        total = 0
        while True:
            deleted = await self.db.run(lambda c: work(c, batch=batch))
            total += deleted
            if deleted < batch:
                return total
            await trio.lowlevel.checkpoint()  # let the API's work in between batches

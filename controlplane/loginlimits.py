"""Login throttling in the database, so every control plane sharing it counts alike.

Units of work (plain functions of a ``Connection``) around the rules of
:mod:`controlplane.throttle`. A reservation is one transaction that first
*writes* (a no-op update of the keys' rows): that takes SQLite's write lock
and PostgreSQL's row locks before anything is read, so two control planes
cannot both read "4 attempts" and both allow the fifth. Two first attempts
inserting the same new key at once on PostgreSQL: one fails with an
integrity error and :func:`reserve_attempt` is simply run again.
"""

from __future__ import annotations

import sqlalchemy as sa

from controlplane import throttle
from controlplane.db import Database
from controlplane.schema import login_attempts
from controlplane.throttle import KeyState, Policy, give_back, wait_for


def _lock_and_read(conn: sa.Connection, keys: list[str]) -> dict[str, KeyState]:
    table = login_attempts
    conn.execute(table.update().where(table.c.key.in_(keys)).values(key=table.c.key))
    rows = conn.execute(sa.select(table).where(table.c.key.in_(keys)).with_for_update())
    return {r.key: KeyState(r.attempts, r.last_at, r.next_at) for r in rows}


def _store(conn: sa.Connection, key: str, state: KeyState, existed: bool) -> None:
    values = {"attempts": state.attempts, "last_at": state.last_at, "next_at": state.next_at}
    if existed:
        conn.execute(login_attempts.update().where(login_attempts.c.key == key).values(**values))
    else:
        conn.execute(login_attempts.insert().values(key=key, **values))


def reserve_attempt(
    conn: sa.Connection, pair_key: str, account_key: str, now: float, policy: Policy
) -> float:
    """Reserve one attempt under both keys; returns 0, or the seconds to wait (nothing counted).

    Also forgets keys that were quiet for the window, so the table holds only
    the keys of the last ``window`` seconds.
    """
    conn.execute(login_attempts.delete().where(login_attempts.c.last_at <= now - policy.window))
    found = _lock_and_read(conn, sorted({pair_key, account_key}))
    wait = max(wait_for(found.get(k), now, policy.window) for k in (pair_key, account_key))
    if wait > 0:
        return wait
    for key, free in ((pair_key, policy.pair_free), (account_key, policy.account_free)):
        _store(conn, key, throttle.reserve(found.get(key), now, free, policy), key in found)
    return 0.0


async def reserve(
    db: Database, pair_key: str, account_key: str, now: float, policy: Policy
) -> float:
    """:func:`reserve_attempt` in a worker thread, run once more after an insert race."""
    try:
        return await db.run(lambda c: reserve_attempt(c, pair_key, account_key, now, policy))
    except sa.exc.IntegrityError:
        # Another transaction inserted the same new key at once: now it exists.
        return await db.run(lambda c: reserve_attempt(c, pair_key, account_key, now, policy))


def login_succeeded(conn: sa.Connection, pair_key: str, account_key: str, policy: Policy) -> None:
    """A reserved attempt was a good login: forget the pair, give the account key its slot back."""
    found = _lock_and_read(conn, [account_key])
    conn.execute(login_attempts.delete().where(login_attempts.c.key == pair_key))
    state = found.get(account_key)
    if state is not None:
        _store(conn, account_key, give_back(state, policy), existed=True)


def attempts_of(conn: sa.Connection, key: str) -> int:
    """Attempts counted under ``key`` (0 for an unknown key); for tests and metrics."""
    row = conn.execute(
        sa.select(login_attempts.c.attempts).where(login_attempts.c.key == key)
    ).first()
    return 0 if row is None else int(row.attempts)

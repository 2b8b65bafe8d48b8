"""Benchmark: what a revocation list costs relayd, by the list's size.

relayd merges every ``revoke`` request (the whole list, after every ``sync``
and on each change) into what it knows, on its event loop, and checks each
handshake and ``auth`` against the result. Prints, per list size, the
milliseconds of CPU to parse one request's list, to merge and prune it, and
the microseconds per token check; and the control plane's side: the
milliseconds to build the list from a database holding that many ended
sessions.

Run: ``.venv/bin/python bench/revocations.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from controlplane import revocation
from controlplane.db import Database
from controlplane.schema import sessions, users
from relayd.revocations import RevocationState
from wire.protocol import Scope
from wire.revocations import Revocations, from_json
from wire.tokens import Claims

SIZES = (100, 10_000, 100_000)
CHECKS = 100_000


def _list(size: int, later: float) -> Revocations:
    return Revocations(
        sessions={f"session-{i:08d}-0000-0000-000000000000": later for i in range(size)},
        users={f"user-{i:08d}": (3, later) for i in range(size // 10)},
        vms=frozenset(f"vm-{i}" for i in range(size // 100)),
    )


def _cpu_ms(work: object) -> float:
    assert callable(work)
    start = time.process_time()
    work()
    return (time.process_time() - start) * 1000


def relayd_side(size: int) -> None:
    later = time.time() + 900
    text = json.dumps(_list(size, later).to_json())
    parse_ms = _cpu_ms(lambda: from_json(json.loads(text)))
    parsed = from_json(json.loads(text))
    state = RevocationState()
    state.add(parsed)
    merge_ms = _cpu_ms(lambda: state.add(parsed))  # the same list again, as after a sync
    token = Claims(
        sub="user-x", scope=Scope.CLIENT, exp=later, iat=0, jti="j", iss="i", sid="s", gen=0
    )
    start = time.process_time()
    for _ in range(CHECKS):
        state.refuses(token)
    check_us = (time.process_time() - start) / CHECKS * 1e6
    print(
        f"relayd  {size:>7} sessions: parse {parse_ms:7.1f} ms  merge+prune {merge_ms:7.1f} ms"
        f"  check {check_us:.2f} us/token  ({len(text) / 1e6:.1f} MB request)"
    )


def controlplane_side(size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(f"sqlite:///{tmp}/b.db")
        now = dt.datetime.now(dt.UTC)

        def fill(conn: sa.Connection) -> None:
            conn.execute(
                users.insert().values(id="u", username="u", password_hash="h", created_at=now)
            )
            conn.execute(
                sessions.insert(),
                [
                    {
                        "id": f"s{i}",
                        "user_id": "u",
                        "created_at": now,
                        "expires_at": now,
                        "revoked_at": now,
                    }
                    for i in range(size)
                ],
            )

        db.run_sync(fill)
        build_ms = _cpu_ms(lambda: db.run_sync(lambda c: revocation.build(c, 900)))
        db.close()
    print(f"control {size:>7} sessions: build {build_ms:7.1f} ms")


def main() -> None:
    """Print the figures for each size."""
    for size in SIZES:
        relayd_side(size)
    for size in SIZES:
        controlplane_side(size)


if __name__ == "__main__":
    main()

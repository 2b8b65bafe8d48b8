"""The control plane's revocation list: built from the database, written for relayd.

What relayd must refuse although the signature is good (:mod:`wire.revocations`):
sessions ended (logout, a reused refresh token, a password change) and
users whose password changed, for as long as an access token issued before
could live (``access_token_ttl`` plus relayd's clock leeway), and every
revoked VM, for good. The list goes to relayd as ``revoke`` and to
``STATE_DIR/revoked.json``, which relayd reads at start and on SIGHUP, so a
revoked VM stays refused while the control plane is away.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from controlplane import store
from controlplane.db import utcnow
from wire.revocations import Revocations, write_file
from wire.tokens import DEFAULT_LEEWAY

#: File name beside ``jwks.json``.
FILE_NAME = "revoked.json"


def revocations_path(state_dir: Path) -> Path:
    """Where the list is written for relayd."""
    return state_dir / FILE_NAME


def build(
    conn: sa.Connection, access_token_ttl: float, now: dt.datetime | None = None
) -> Revocations:
    """The list as the database has it at ``now``."""
    moment = now or utcnow()
    alive = dt.timedelta(seconds=access_token_ttl + DEFAULT_LEEWAY)
    ended, changed, revoked_vms = store.revoked_since(conn, moment - alive)
    return Revocations(
        sessions={sid: (at + alive).timestamp() for sid, at in ended.items()},
        users={user: (gen, (at + alive).timestamp()) for user, (gen, at) in changed.items()},
        vms=frozenset(revoked_vms),
    )


def write(state_dir: Path, revocations: Revocations) -> None:
    """Write ``revoked.json`` (blocking)."""
    write_file(revocations_path(state_dir), revocations)

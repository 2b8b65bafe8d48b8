"""VMs that never return: after ``--vm-lost-after`` their workspaces are placed again.

A VM that has been offline (on every node) for longer than the setting is
given up on: each of its live workspaces loses its VM, gets ``lost_at``, and
waits for placement like a new one. The next VM it is placed on has no log
of it, so its conversation starts over there, in a new epoch; the API shows
``lostAt`` and the web app says so. A VM that comes back later no longer
owns those workspaces.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from controlplane.db import utcnow
from controlplane.schema import vms, workspaces


def give_up_on_lost_vms(conn: sa.Connection, lost_after: float) -> list[str]:
    """Unplace the workspaces of VMs offline for over ``lost_after`` seconds; their ids."""
    now = utcnow()
    cutoff = now - dt.timedelta(seconds=lost_after)
    lost_vms = sa.select(vms.c.id).where(
        vms.c.online.is_(False), vms.c.last_seen_at.is_not(None), vms.c.last_seen_at < cutoff
    )
    live = sa.and_(workspaces.c.vm_id.in_(lost_vms), workspaces.c.deleted_at.is_(None))
    ids = [r.id for r in conn.execute(sa.select(workspaces.c.id).where(live))]
    if ids:
        conn.execute(
            workspaces.update()
            .where(workspaces.c.id.in_(ids))
            .values(vm_id=None, reported_status=None, lost_at=now, updated_at=now)
        )
    return ids

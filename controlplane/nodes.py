"""Nodes: one relayd and the control plane beside it, several on one PostgreSQL.

Every node records itself (``register``) with the URL its relayd serves
clients at. A VM is recorded on the node whose relayd reported it online
(:func:`controlplane.store.set_vm_online`); the API gives each workspace the
relay URL of its VM's node. When a VM this node's relayd served shows up on
another node, this node's relayd closes that VM's workspaces' clients with
"moved" (:func:`moved_away`, then the control request ``moved``), and they
ask the API where to go.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import sqlalchemy as sa

from controlplane.db import utcnow
from controlplane.schema import nodes, vms, workspaces

#: The node id of a control plane that is not told one (one node, ``make dev``).
DEFAULT_NODE_ID: Final = "node1"
#: Longest node id (the column's width).
MAX_NODE_ID: Final = 64


def valid_node_id(value: str) -> bool:
    """A node id: 1-64 characters of letters, digits, ``.``, ``_`` and ``-``."""
    return 0 < len(value) <= MAX_NODE_ID and all(
        c.isascii() and (c.isalnum() or c in "._-") for c in value
    )


def register(conn: sa.Connection, node_id: str, relay_url: str) -> None:
    """Record this node and its relay URL (at every start: the URL may have changed)."""
    now = utcnow()
    done = conn.execute(
        nodes.update().where(nodes.c.id == node_id).values(relay_url=relay_url, updated_at=now)
    )
    if done.rowcount == 0:
        conn.execute(nodes.insert().values(id=node_id, relay_url=relay_url, updated_at=now))


def list_nodes(conn: sa.Connection) -> dict[str, str]:
    """Every node's id and relay URL."""
    return {r.id: r.relay_url for r in conn.execute(sa.select(nodes.c.id, nodes.c.relay_url))}


def vm_nodes(conn: sa.Connection) -> dict[str, str | None]:
    """Every VM's id and the node it is (or was last) connected to."""
    return {r.id: r.node_id for r in conn.execute(sa.select(vms.c.id, vms.c.node_id))}


def workspaces_of(conn: sa.Connection, vm_ids: Iterable[str]) -> list[str]:
    """The live workspaces placed on these VMs."""
    wanted = list(vm_ids)
    if not wanted:
        return []
    rows = conn.execute(
        sa.select(workspaces.c.id)
        .where(workspaces.c.vm_id.in_(wanted), workspaces.c.deleted_at.is_(None))
        .order_by(workspaces.c.id)
    )
    return [r.id for r in rows]


def moved_away(served: Iterable[str], recorded: Mapping[str, str | None], me: str) -> set[str]:
    """The VMs this node's relayd served that the database now records on another node."""
    return {vm for vm in served if recorded.get(vm) not in (None, me)}

"""nodes, vms.node_id, and change notifications: several nodes on one PostgreSQL.

A node is one relayd and the control plane beside it. ``nodes`` holds each
node's relay URL; ``vms.node_id`` is the node whose relayd the VM is (or was
last) connected to. On PostgreSQL, triggers send ``NOTIFY ffcloud_changes``
(the payload: the table's name) on every change that concerns a relayd, so
that every node's control plane hears of it at once (SQLite has one node and
no triggers).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: The channel of ``LISTEN``/``NOTIFY`` (controlplane/changes.py listens on it).
CHANNEL = "ffcloud_changes"

#: table -> the statement trigger's events (only the columns a relayd cares about).
_WATCHED = {
    "workspaces": "INSERT OR UPDATE OF vm_id, user_id, deleted_at OR DELETE",
    "vms": "INSERT OR UPDATE OF node_id, online, revoked_at OR DELETE",
    "sessions": "INSERT OR UPDATE OF revoked_at OR DELETE",
    "users": "UPDATE OF token_gen, password_changed_at OR DELETE",
    "removed_users": "INSERT OR DELETE",
}


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("relay_url", sa.String(length=300), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
    )
    with op.batch_alter_table("vms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_vms_node_id"), ["node_id"], unique=False)
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION ffcloud_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $$"
    )
    for table, events in _WATCHED.items():
        op.execute(
            f"CREATE TRIGGER ffcloud_notify_{table} AFTER {events} ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ffcloud_notify_change()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _WATCHED:
            op.execute(f"DROP TRIGGER ffcloud_notify_{table} ON {table}")
        op.execute("DROP FUNCTION ffcloud_notify_change()")
    with op.batch_alter_table("vms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vms_node_id"))
        batch_op.drop_column("node_id")
    op.drop_table("nodes")

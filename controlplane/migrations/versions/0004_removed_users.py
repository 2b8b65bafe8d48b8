"""removed_users: relayd refuses a removed user's access tokens until they expire.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 08:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "removed_users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removed_users")),
    )
    with op.batch_alter_table("removed_users", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_removed_users_removed_at"), ["removed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("removed_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_removed_users_removed_at"))
    op.drop_table("removed_users")

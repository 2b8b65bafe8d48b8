"""The database schema (SQLAlchemy Core), portable to SQLite and PostgreSQL.

Alembic migrations in ``controlplane/migrations`` create exactly this; a test
compares the two so they never drift. Times are timezone-aware UTC.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

UTC_TIME = sa.DateTime(timezone=True)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    # Set by every password change: the running control plane cuts off the
    # user's relay connections, whose access tokens predate it (migration 0002).
    sa.Column("password_changed_at", UTC_TIME, nullable=True, index=True),
    # Access tokens carry it as ``gen``; a password change raises it, which
    # ends every access token issued before (migration 0003).
    sa.Column("token_gen", sa.Integer, nullable=False, server_default="0"),
)

# One login: its refresh tokens share the session's id (their ``family_id``),
# and its access tokens carry it as ``sid``. Logout, reuse of a rotated
# refresh token or a password change revoke it; it ends for good at
# ``expires_at`` (the absolute lifetime), however often it was refreshed.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("expires_at", UTC_TIME, nullable=False),
    sa.Column("revoked_at", UTC_TIME, nullable=True, index=True),
)

# Users removed (``controlplane user remove``): their rows are gone, but
# relayd must refuse their access tokens until those expire (migration 0004).
removed_users = sa.Table(
    "removed_users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("removed_at", UTC_TIME, nullable=False, index=True),
)

# Login attempts per throttling key (``acct:NAME`` and ``pair:NAME|ADDRESS``),
# shared by every control plane on the database. Times are epoch seconds of
# the control plane's clock; a row quiet for the failure window is stale.
login_attempts = sa.Table(
    "login_attempts",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_at", sa.Float, nullable=False, index=True),
    sa.Column("next_at", sa.Float, nullable=False),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    # Every token descended from one login shares a family: reuse of a rotated
    # token revokes the whole family (it means the token was stolen).
    sa.Column("family_id", sa.String(36), nullable=False, index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("expires_at", UTC_TIME, nullable=False),
    sa.Column("used_at", UTC_TIME, nullable=True),
    sa.Column("revoked_at", UTC_TIME, nullable=True),
)

vms = sa.Table(
    "vms",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    # "local": started by the local provisioner; "none": dials in by itself.
    sa.Column("provisioner", sa.String(16), nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("revoked_at", UTC_TIME, nullable=True),
    sa.Column("online", sa.Boolean, nullable=False, default=False),
    sa.Column("last_seen_at", UTC_TIME, nullable=True),
    # The node whose relayd the VM is (or was last) connected to (migration 0005).
    sa.Column("node_id", sa.String(64), nullable=True, index=True),
)

# Every node (a relayd and the control plane beside it) on this database, and
# the URL its relayd serves clients at: the API gives each workspace the URL
# of its VM's node (migration 0005).
nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("relay_url", sa.String(300), nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
)

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("issue_url", sa.String(300), nullable=False),
    sa.Column("issue_owner", sa.String(64), nullable=False),
    sa.Column("issue_repo", sa.String(128), nullable=False),
    sa.Column("issue_number", sa.Integer, nullable=False),
    sa.Column("issue_title", sa.Text, nullable=True),
    sa.Column("issue_body", sa.Text, nullable=True),
    # Why the issue could not be fetched, when it could not.
    sa.Column("issue_fetch_error", sa.Text, nullable=True),
    # The status its VM last reported (None: none yet); the API derives the rest.
    sa.Column("reported_status", sa.String(32), nullable=True),
    sa.Column("vm_id", sa.String(36), sa.ForeignKey("vms.id", ondelete="SET NULL"), nullable=True),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
    sa.Column("deleted_at", UTC_TIME, nullable=True),
    # When its VM had been away for ``--vm-lost-after`` and it was placed
    # again (its conversation starts over on the next VM; migration 0006).
    sa.Column("lost_at", UTC_TIME, nullable=True),
    sa.Index("ix_workspaces_user_created", "user_id", "created_at"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "workspace_id",
        sa.String(36),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("user_id", sa.String(36), nullable=True),
    # The workspace session it is about; NULL: main (migration 0007).
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(200), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("at", UTC_TIME, nullable=False),
)

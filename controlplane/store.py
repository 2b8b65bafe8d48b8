"""Units of work on the database: plain functions of a ``Connection``.

Each runs in one transaction through :meth:`controlplane.db.Database.run`.
Only portable SQL (SQLAlchemy Core expressions), so PostgreSQL runs them too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

import attrs
import sqlalchemy as sa

from controlplane.db import as_utc, utcnow
from controlplane.issues import FetchedIssue, IssueRef
from controlplane.nodes import DEFAULT_NODE_ID
from controlplane.placement import plan_placement
from controlplane.schema import (
    audit,
    nodes,
    refresh_tokens,
    removed_users,
    sessions,
    users,
    vms,
    workspaces,
)

#: The generation listed for a removed user: higher than any token carries.
REMOVED_GEN = 2**31 - 1

PROVISIONING = "provisioning"
OFFLINE = "offline"
DELETED = "deleted"


def new_id() -> str:
    """A fresh random id."""
    return str(uuid.uuid4())


def token_hash(token: str) -> str:
    """How refresh tokens are stored: SHA-256 (they are random, so no salt is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


class AlreadyExists(Exception):
    """A user or VM by that name exists."""


# --- users ---------------------------------------------------------------


@attrs.frozen
class User:
    """An account."""

    id: str
    username: str


def add_user(conn: sa.Connection, username: str, password_hash: str) -> User:
    """Create a user; :class:`AlreadyExists` when the name is taken."""
    if conn.execute(sa.select(users.c.id).where(users.c.username == username)).first():
        raise AlreadyExists(username)
    user = User(new_id(), username)
    conn.execute(
        users.insert().values(
            id=user.id, username=username, password_hash=password_hash, created_at=utcnow()
        )
    )
    return user


def set_password(conn: sa.Connection, username: str, password_hash: str) -> bool:
    """Change a user's password and end their sessions; False when there is no such user.

    Every session and refresh token is revoked, and the user's token
    generation goes up: access tokens carry the generation they were issued
    with (``gen``), so the API and relayd refuse every one issued before.
    ``password_changed_at`` dates the change for the revocation list.
    """
    row = conn.execute(sa.select(users.c.id).where(users.c.username == username)).first()
    if row is None:
        return False
    now = utcnow()
    conn.execute(
        users.update()
        .where(users.c.id == row.id)
        .values(
            password_hash=password_hash,
            password_changed_at=now,
            token_gen=users.c.token_gen + 1,
        )
    )
    conn.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.user_id == row.id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    conn.execute(
        sessions.update()
        .where(sessions.c.user_id == row.id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return True


def remove_user(conn: sa.Connection, username: str) -> str | None:
    """Delete a user with everything theirs (sessions, workspaces and their audit).

    The id is kept in ``removed_users`` so that relayd is told to refuse the
    user's access tokens until they expire. Returns the id, or None when
    there is no such user.
    """
    row = conn.execute(sa.select(users.c.id).where(users.c.username == username)).first()
    if row is None:
        return None
    conn.execute(users.delete().where(users.c.id == row.id))
    conn.execute(removed_users.insert().values(id=row.id, removed_at=utcnow()))
    return str(row.id)


def password_changes_since(conn: sa.Connection, since: dt.datetime) -> dict[str, dt.datetime]:
    """User id -> when their password last changed, for changes after ``since``."""
    rows = conn.execute(
        sa.select(users.c.id, users.c.password_changed_at).where(
            users.c.password_changed_at > since
        )
    )
    return {r.id: as_utc(r.password_changed_at) for r in rows}


def user_credentials(conn: sa.Connection, username: str) -> tuple[User, str] | None:
    """The user and their password hash."""
    row = conn.execute(
        sa.select(users.c.id, users.c.username, users.c.password_hash).where(
            users.c.username == username
        )
    ).first()
    return None if row is None else (User(row.id, row.username), row.password_hash)


def get_user(conn: sa.Connection, user_id: str) -> User | None:
    """A user by id."""
    row = conn.execute(sa.select(users.c.id, users.c.username).where(users.c.id == user_id)).first()
    return None if row is None else User(row.id, row.username)


# --- sessions and refresh tokens -------------------------------------------


@attrs.frozen
class Session:
    """One login: what its access tokens carry (``sid``, ``gen``) and when it ends."""

    id: str
    user: User
    gen: int
    expires_at: dt.datetime


def add_session(
    conn: sa.Connection, user: User, refresh: str, ttl: float, max_age: float
) -> Session:
    """Start a login with its first refresh token; it ends ``max_age`` seconds from now."""
    now = utcnow()
    session_id = new_id()
    expires = now + dt.timedelta(seconds=max_age)
    conn.execute(
        sessions.insert().values(id=session_id, user_id=user.id, created_at=now, expires_at=expires)
    )
    add_refresh_token(conn, user.id, refresh, ttl, family_id=session_id, not_after=expires)
    gen = conn.execute(sa.select(users.c.token_gen).where(users.c.id == user.id)).scalar_one()
    return Session(session_id, user, int(gen), expires)


def add_refresh_token(
    conn: sa.Connection,
    user_id: str,
    token: str,
    ttl: float,
    family_id: str | None = None,
    not_after: dt.datetime | None = None,
) -> None:
    """Store a new refresh token (hashed); it never outlives ``not_after``."""
    now = utcnow()
    expires = now + dt.timedelta(seconds=ttl)
    if not_after is not None:
        expires = min(expires, not_after)
    conn.execute(
        refresh_tokens.insert().values(
            id=new_id(),
            user_id=user_id,
            family_id=family_id or new_id(),
            token_hash=token_hash(token),
            created_at=now,
            expires_at=expires,
        )
    )


def _revoke_family(conn: sa.Connection, family_id: str, now: dt.datetime) -> None:
    conn.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    conn.execute(
        sessions.update()
        .where(sessions.c.id == family_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def rotate_refresh_token(conn: sa.Connection, old: str, new: str, ttl: float) -> Session | None:
    """Spend ``old`` and store ``new`` in its session; None when ``old`` is not valid.

    A token that was already spent or revoked revokes its whole session: only
    a thief presents a token that has been rotated away. A session that was
    revoked or has reached its absolute end gives no new token.
    """
    row = conn.execute(
        sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash(old))
    ).first()
    if row is None:
        return None
    now = utcnow()
    if row.used_at is not None or row.revoked_at is not None:
        _revoke_family(conn, row.family_id, now)
        return None
    if as_utc(row.expires_at) <= now:
        return None
    found = conn.execute(
        sa.select(sessions, users.c.username, users.c.token_gen)
        .select_from(sessions.join(users, sessions.c.user_id == users.c.id))
        .where(sessions.c.id == row.family_id)
    ).first()
    # No session row: a token from before sessions existed; log in again.
    if found is None or found.revoked_at is not None or as_utc(found.expires_at) <= now:
        return None
    # Mark it spent only if nobody else did meanwhile (a concurrent refresh).
    spent = conn.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.id == row.id, refresh_tokens.c.used_at.is_(None))
        .values(used_at=now)
    )
    if spent.rowcount != 1:
        return None
    expires = as_utc(found.expires_at)
    add_refresh_token(conn, row.user_id, new, ttl, family_id=row.family_id, not_after=expires)
    user = User(row.user_id, found.username)
    return Session(found.id, user, int(found.token_gen), expires)


def revoke_refresh_token(conn: sa.Connection, token: str) -> str | None:
    """Logout: revoke the token's session and its every token; returns the session id."""
    row = conn.execute(
        sa.select(refresh_tokens.c.family_id).where(
            refresh_tokens.c.token_hash == token_hash(token)
        )
    ).first()
    if row is None:
        return None
    _revoke_family(conn, row.family_id, utcnow())
    return str(row.family_id)


def access_allowed(
    conn: sa.Connection, user_id: str, session_id: str | None, gen: int | None
) -> User | None:
    """The user an access token names, if its session is live and its generation current."""
    if session_id is None or gen is None:
        return None  # issued before sessions existed
    row = conn.execute(
        sa.select(users.c.id, users.c.username)
        .select_from(sessions.join(users, sessions.c.user_id == users.c.id))
        .where(
            sessions.c.id == session_id,
            users.c.id == user_id,
            users.c.token_gen == gen,
            sessions.c.revoked_at.is_(None),
            sessions.c.expires_at > utcnow(),
        )
    ).first()
    return None if row is None else User(row.id, row.username)


def revoked_since(
    conn: sa.Connection, since: dt.datetime
) -> tuple[dict[str, dt.datetime], dict[str, tuple[int, dt.datetime]], list[str]]:
    """What relayd must refuse: sessions revoked after ``since`` (id -> when), users
    whose password changed or who were removed after ``since`` (id -> (lowest
    generation still good, when); :data:`REMOVED_GEN` for a removed user),
    and every revoked VM."""
    ended = {
        r.id: as_utc(r.revoked_at)
        for r in conn.execute(
            sa.select(sessions.c.id, sessions.c.revoked_at).where(sessions.c.revoked_at > since)
        )
    }
    changed = {
        r.id: (int(r.token_gen), as_utc(r.password_changed_at))
        for r in conn.execute(
            sa.select(users.c.id, users.c.token_gen, users.c.password_changed_at).where(
                users.c.password_changed_at > since
            )
        )
    }
    for r in conn.execute(
        sa.select(removed_users.c.id, removed_users.c.removed_at).where(
            removed_users.c.removed_at > since
        )
    ):
        changed[r.id] = (REMOVED_GEN, as_utc(r.removed_at))
    revoked_vms = [
        r.id for r in conn.execute(sa.select(vms.c.id).where(vms.c.revoked_at.is_not(None)))
    ]
    return ended, changed, sorted(revoked_vms)


# --- VMs -----------------------------------------------------------------


@attrs.frozen
class Vm:
    """A registered VM."""

    id: str
    name: str
    provisioner: str
    revoked: bool
    online: bool


def _vm(row: Any) -> Vm:
    return Vm(row.id, row.name, row.provisioner, row.revoked_at is not None, bool(row.online))


def add_vm(conn: sa.Connection, name: str, provisioner: str) -> Vm:
    """Register a VM; :class:`AlreadyExists` when the name is taken."""
    if conn.execute(sa.select(vms.c.id).where(vms.c.name == name)).first():
        raise AlreadyExists(name)
    vm_id = new_id()
    conn.execute(
        vms.insert().values(
            id=vm_id, name=name, provisioner=provisioner, created_at=utcnow(), online=False
        )
    )
    return Vm(vm_id, name, provisioner, revoked=False, online=False)


def get_vm(conn: sa.Connection, vm_id: str) -> Vm | None:
    """A VM by id."""
    row = conn.execute(sa.select(vms).where(vms.c.id == vm_id)).first()
    return None if row is None else _vm(row)


def find_vm(conn: sa.Connection, name_or_id: str) -> Vm | None:
    """A VM by name or id."""
    row = conn.execute(
        sa.select(vms).where(sa.or_(vms.c.name == name_or_id, vms.c.id == name_or_id))
    ).first()
    return None if row is None else _vm(row)


def list_vms(conn: sa.Connection) -> list[Vm]:
    """Every VM, by name."""
    return [_vm(r) for r in conn.execute(sa.select(vms).order_by(vms.c.name))]


def revoke_vm(conn: sa.Connection, vm_id: str) -> list[str]:
    """Revoke a VM; its workspaces go back to waiting for placement. Returns their ids."""
    now = utcnow()
    conn.execute(vms.update().where(vms.c.id == vm_id).values(revoked_at=now, online=False))
    moved = [
        r.id
        for r in conn.execute(
            sa.select(workspaces.c.id).where(
                workspaces.c.vm_id == vm_id, workspaces.c.deleted_at.is_(None)
            )
        )
    ]
    conn.execute(
        workspaces.update()
        .where(workspaces.c.vm_id == vm_id, workspaces.c.deleted_at.is_(None))
        .values(vm_id=None, reported_status=None, updated_at=now)
    )
    return moved


def set_vm_online(
    conn: sa.Connection, vm_id: str, online: bool, *, node_id: str = DEFAULT_NODE_ID
) -> Vm | None:
    """Record that ``node_id``'s relayd reported the VM on- or offline; None for an unknown VM.

    Online, the VM is recorded on that node. Offline counts only from the
    node it is recorded on: a VM that moved to another node may be reported
    gone by its old one after the new one reported it there.
    """
    vm = get_vm(conn, vm_id)
    if vm is None:
        return None
    now = utcnow()
    if online:
        conn.execute(
            vms.update()
            .where(vms.c.id == vm_id)
            .values(online=not vm.revoked, last_seen_at=now, node_id=node_id)
        )
        return attrs.evolve(vm, online=not vm.revoked)
    done = conn.execute(
        vms.update()
        .where(vms.c.id == vm_id, _on_node(node_id))
        .values(online=False, last_seen_at=now)
    )
    return attrs.evolve(vm, online=vm.online and done.rowcount == 0)


def _on_node(node_id: str) -> sa.ColumnElement[bool]:
    # A VM recorded before nodes were (node_id NULL) belongs to whichever asks.
    return sa.or_(vms.c.node_id == node_id, vms.c.node_id.is_(None))


def set_all_vms_offline(conn: sa.Connection, *, node_id: str = DEFAULT_NODE_ID) -> None:
    """Forget who is online on one node (the link to its relayd was re-made; it will tell again)."""
    conn.execute(vms.update().where(vms.c.online.is_(True), _on_node(node_id)).values(online=False))


# --- workspaces ------------------------------------------------------------


@attrs.frozen
class Workspace:
    """A workspace as the API shows it."""

    id: str
    user_id: str
    name: str
    issue_url: str
    issue_owner: str
    issue_repo: str
    issue_number: int
    issue_title: str | None
    issue_body: str | None
    issue_fetch_error: str | None
    status: str
    vm_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    #: The relay URL of the node its VM is (or was last) connected to; None: no such node yet.
    relay_url: str | None = None
    #: When its VM was given up on and it was placed again (None: never).
    lost_at: dt.datetime | None = None

    def issue_message(self) -> dict[str, Any]:
        """The ``issue`` object of ``assign``/``sync`` and ``workspace_assigned``."""
        issue: dict[str, Any] = {
            "url": self.issue_url,
            "owner": self.issue_owner,
            "repo": self.issue_repo,
            "number": self.issue_number,
        }
        if self.issue_title is not None:
            issue["title"] = self.issue_title
        if self.issue_body is not None:
            issue["body"] = self.issue_body
        return issue


_WORKSPACE_QUERY = sa.select(
    workspaces, vms.c.online.label("vm_online"), nodes.c.relay_url.label("node_relay_url")
).select_from(
    workspaces.outerjoin(vms, workspaces.c.vm_id == vms.c.id).outerjoin(
        nodes, vms.c.node_id == nodes.c.id
    )
)


def derive_status(row: Any) -> str:
    """``deleted``, ``provisioning`` (no VM or no word from it yet), ``offline`` or the VM's."""
    if row.deleted_at is not None:
        return DELETED
    if row.vm_id is None:
        return PROVISIONING
    if not row.vm_online:
        return OFFLINE
    return str(row.reported_status or PROVISIONING)


def _workspace(row: Any) -> Workspace:
    return Workspace(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        issue_url=row.issue_url,
        issue_owner=row.issue_owner,
        issue_repo=row.issue_repo,
        issue_number=row.issue_number,
        issue_title=row.issue_title,
        issue_body=row.issue_body,
        issue_fetch_error=row.issue_fetch_error,
        status=derive_status(row),
        vm_id=row.vm_id,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        relay_url=row.node_relay_url,
        lost_at=as_utc(row.lost_at) if row.lost_at is not None else None,
    )


def count_user_workspaces(conn: sa.Connection, user_id: str) -> int:
    """Workspaces of a user that are not deleted."""
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(workspaces)
            .where(workspaces.c.user_id == user_id, workspaces.c.deleted_at.is_(None))
        ).scalar_one()
    )


def add_workspace(
    conn: sa.Connection, user_id: str, ref: IssueRef, fetched: FetchedIssue
) -> Workspace:
    """Store a new workspace, waiting for placement."""
    now = utcnow()
    workspace_id = new_id()
    name = f"{ref.owner}/{ref.repo}#{ref.number}"
    conn.execute(
        workspaces.insert().values(
            id=workspace_id,
            user_id=user_id,
            name=name,
            issue_url=ref.url,
            issue_owner=ref.owner,
            issue_repo=ref.repo,
            issue_number=ref.number,
            issue_title=fetched.title,
            issue_body=fetched.body,
            issue_fetch_error=fetched.error,
            reported_status=None,
            vm_id=None,
            created_at=now,
            updated_at=now,
        )
    )
    found = get_workspace(conn, workspace_id)
    assert found is not None
    return found


def get_workspace(
    conn: sa.Connection, workspace_id: str, user_id: str | None = None
) -> Workspace | None:
    """A workspace by id (archived ones too); with ``user_id``, only if it is theirs."""
    query = _WORKSPACE_QUERY.where(workspaces.c.id == workspace_id)
    if user_id is not None:
        query = query.where(workspaces.c.user_id == user_id)
    row = conn.execute(query).first()
    return None if row is None else _workspace(row)


def list_workspaces(conn: sa.Connection, user_id: str) -> list[Workspace]:
    """A user's workspaces that are not deleted, newest first."""
    rows = conn.execute(
        _WORKSPACE_QUERY.where(
            workspaces.c.user_id == user_id, workspaces.c.deleted_at.is_(None)
        ).order_by(workspaces.c.created_at.desc(), workspaces.c.id.desc())
    )
    return [_workspace(r) for r in rows]


def delete_workspace(conn: sa.Connection, workspace_id: str, user_id: str) -> Workspace | None:
    """Archive a user's workspace; None when it is not theirs or already deleted.

    The row stays (with ``deleted_at``) so the audit trail keeps its subject.
    """
    found = get_workspace(conn, workspace_id, user_id)
    if found is None or found.status == DELETED:
        return None
    now = utcnow()
    conn.execute(
        workspaces.update()
        .where(workspaces.c.id == workspace_id)
        .values(deleted_at=now, updated_at=now)
    )
    return found


def set_reported_status(conn: sa.Connection, workspace_id: str, status: str) -> bool:
    """Store the status relayd reported for a live workspace; False when there is none."""
    result = conn.execute(
        workspaces.update()
        .where(workspaces.c.id == workspace_id, workspaces.c.deleted_at.is_(None))
        .values(reported_status=status, updated_at=utcnow())
    )
    return result.rowcount == 1


def assignments(conn: sa.Connection) -> list[Workspace]:
    """Every live workspace placed on a VM that is not revoked (what ``sync`` sends)."""
    rows = conn.execute(
        _WORKSPACE_QUERY.where(
            workspaces.c.deleted_at.is_(None),
            workspaces.c.vm_id.is_not(None),
            vms.c.revoked_at.is_(None),
        ).order_by(workspaces.c.created_at)
    )
    return [_workspace(r) for r in rows]


def place_pending(conn: sa.Connection) -> list[Workspace]:
    """Place every waiting workspace on the least loaded online VM; returns those placed."""
    online = [
        r.id
        for r in conn.execute(
            sa.select(vms.c.id).where(vms.c.online.is_(True), vms.c.revoked_at.is_(None))
        )
    ]
    if not online:
        return []
    loads = dict.fromkeys(online, 0)
    counted = conn.execute(
        sa.select(workspaces.c.vm_id, sa.func.count())
        .where(workspaces.c.vm_id.in_(online), workspaces.c.deleted_at.is_(None))
        .group_by(workspaces.c.vm_id)
    )
    for vm_id, count in counted:
        loads[vm_id] = int(count)
    pending = [
        r.id
        for r in conn.execute(
            sa.select(workspaces.c.id)
            .where(workspaces.c.vm_id.is_(None), workspaces.c.deleted_at.is_(None))
            .order_by(workspaces.c.created_at, workspaces.c.id)
        )
    ]
    placed: list[Workspace] = []
    now = utcnow()
    for workspace_id, vm_id in plan_placement(loads, pending):
        conn.execute(
            workspaces.update()
            .where(workspaces.c.id == workspace_id, workspaces.c.vm_id.is_(None))
            .values(vm_id=vm_id, reported_status=None, updated_at=now)
        )
        found = get_workspace(conn, workspace_id)
        if found is not None:
            placed.append(found)
    return placed


# --- audit -----------------------------------------------------------------


@attrs.frozen
class AuditEntry:
    """Who answered, approved, denied or interrupted, and when."""

    at: dt.datetime
    user_id: str | None
    action: str
    request_id: str | None
    detail: str | None
    #: The workspace session it is about; None: main.
    session_id: str | None = None


def add_audit(
    conn: sa.Connection,
    workspace_id: str,
    user_id: str | None,
    action: str,
    request_id: str | None,
    at: dt.datetime,
    detail: str | None = None,
    session_id: str | None = None,
) -> bool:
    """Store one audit event (``session_id`` None: main); False when the workspace is unknown."""
    exists = conn.execute(sa.select(workspaces.c.id).where(workspaces.c.id == workspace_id)).first()
    if exists is None:
        return False
    conn.execute(
        audit.insert().values(
            workspace_id=workspace_id,
            user_id=user_id,
            session_id=session_id,
            action=action,
            request_id=request_id,
            detail=detail,
            at=at,
        )
    )
    return True


def list_audit(conn: sa.Connection, workspace_id: str, limit: int) -> Sequence[AuditEntry]:
    """A workspace's audit trail, oldest first (the last ``limit`` entries)."""
    rows = conn.execute(
        sa.select(audit)
        .where(audit.c.workspace_id == workspace_id)
        .order_by(audit.c.id.desc())
        .limit(limit)
    ).all()
    return [
        AuditEntry(as_utc(r.at), r.user_id, r.action, r.request_id, r.detail, r.session_id)
        for r in reversed(rows)
    ]


def count_workspaces_by_status(conn: sa.Connection) -> dict[str, int]:
    """Live workspaces per derived status (for metrics)."""
    counts: dict[str, int] = {}
    for row in conn.execute(_WORKSPACE_QUERY.where(workspaces.c.deleted_at.is_(None))):
        status = derive_status(row)
        counts[status] = counts.get(status, 0) + 1
    return counts

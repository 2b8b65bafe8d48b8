"""Keeps relayd's ownership table equal to the database, and the database up to
date with what relayd reports.

- After every connect: every VM is offline until relayd says otherwise, and a
  full ``sync`` sends every live placement.
- Events: ``vm_online``/``vm_offline`` (placing waiting workspaces on VMs that
  come), ``workspace_status`` and ``audit`` are stored. An audit event or a
  status the database cannot take (PostgreSQL restarting) is held, in order
  and bounded (:data:`HELD_EVENTS`), and stored by the next event or pass
  once it is back: relayd has already handed it over and will not send it
  again.
- One reconciler task places waiting workspaces (``assign``), cuts off revoked
  VMs (``disconnect``) and, every ``interval`` seconds, re-syncs when the
  database changed behind its back (``controlplane vm revoke`` from another
  process, another control plane on the same PostgreSQL).
- The revocation list (:mod:`controlplane.revocation`) goes to relayd whole
  as ``revoke`` after every ``sync`` and whenever a pass finds it changed
  (a logout, a password change or a ``vm revoke``, maybe by another
  process); relayd refuses those tokens and closes the connections that use
  them. Each new list is also written to ``revoked.json`` for relayd's
  restarts.
- Several nodes on one PostgreSQL (:mod:`controlplane.nodes`): VMs are
  recorded on this node when its relayd reports them; every node's relayd
  holds every placement (a VM may dial any node); a pass that finds a VM this
  relayd served now recorded on another node tells relayd ``moved``, which
  closes that VM's workspaces' clients (4307) so they ask the API where to
  go. Other nodes' changes reach the reconciler through
  :mod:`controlplane.changes` (``kick``), else within ``interval``.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import re
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
import trio

from controlplane import lost, nodes, revocation, store
from controlplane.db import Database, utcnow
from controlplane.relaylink import RelayLink, RelayRefused, RelayUnavailable
from wire.protocol import MAIN_SESSION, Status, is_session_id
from wire.revocations import Revocations

log = logging.getLogger(__name__)

#: Seconds between checks that relayd's table still matches the database.
RECONCILE_INTERVAL: Final = 5.0
#: Seconds after a password change during which access tokens issued before
#: it may still be alive (the access token lifetime).
SESSION_WINDOW: Final = 15 * 60.0
#: Statuses a VM may report (``offline`` is the relay's word, derived here instead).
_REPORTABLE: Final = frozenset(s.value for s in Status) - {Status.OFFLINE.value}
MAX_ACTION_LENGTH: Final = 64
#: Audit events (and workspaces' latest statuses) held while the database
#: cannot take them; past this the oldest audit event is dropped and counted.
HELD_EVENTS: Final = 10_000
#: What the database raises while it is away (a restart, a lost connection):
#: worth holding the event for. Anything else is a bug and is not retried.
_DATABASE_AWAY: Final = (sa.exc.OperationalError, sa.exc.InterfaceError)
MAX_DETAIL_LENGTH: Final = 4096
#: Seconds the relayd link must have been up before VMs are given up on
#: (``vm_lost_after``): relayd reports the VMs online at once after a sync,
#: and none may be judged lost before those reports are in.
LOST_GRACE: Final = 30.0
#: Largest ``sync`` sent with issue bodies (relayd's line limit is 16 MiB).
MAX_SYNC_BYTES: Final = 8 * 1024 * 1024


def sync_entry(workspace: store.Workspace, *, with_body: bool = True) -> dict[str, Any]:
    """One element of ``sync`` (and the fields of ``assign``)."""
    assert workspace.vm_id is not None
    issue = workspace.issue_message()
    if not with_body:
        issue.pop("body", None)
    return {
        "workspaceId": workspace.id,
        "vmId": workspace.vm_id,
        "userIds": [workspace.user_id],
        "issue": issue,
    }


def sync_entries(placed: list[store.Workspace]) -> list[dict[str, Any]]:
    """The ``workspaces`` of a ``sync``; without issue bodies if they would make it too long.

    relayd refuses a control line over 16 MiB, which would fail every sync
    for good; the bodies matter only to a VM that does not have the
    workspace yet, and ``assign`` carries them.
    """
    entries = [sync_entry(w) for w in placed]
    if len(json.dumps(entries)) > MAX_SYNC_BYTES:
        log.warning("sync too long with issue bodies; sending it without them")
        entries = [sync_entry(w, with_body=False) for w in placed]
    return entries


def parse_time(value: object) -> dt.datetime:
    """relayd's ``at``: ISO 8601 text or seconds (or milliseconds) since the epoch."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            # Inside the try: 10**400 / 1000 raises OverflowError too.
            seconds = value / 1000 if value > 1e11 else value
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        except (OverflowError, OSError, ValueError):
            return utcnow()
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return utcnow()
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return utcnow()


def audit_session(value: object) -> str | None:
    """An audit event's ``sessionId`` as stored: None for main (absent or ``main``).

    One that is not a session id (docs/protocol.md, "Sessions") is not
    stored: the entry is kept, without it, and the oddity logged.
    """
    if value is None or value == MAIN_SESSION:
        return None
    if not is_session_id(value):
        log.warning("audit event with a malformed sessionId; stored without it")
        return None
    assert isinstance(value, str)
    return value


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _text(value: object) -> str | None:
    """A string of an event as the database can store it (a lone surrogate becomes U+FFFD)."""
    if not isinstance(value, str):
        return None
    return _SURROGATE.sub("\ufffd", value)


def _short(value: object, limit: int) -> str | None:
    text = _text(value)
    return text[:limit] if text else None


class Coordinator:
    """The control plane's side of the relayd link."""

    def __init__(
        self,
        db: Database,
        *,
        interval: float = RECONCILE_INTERVAL,
        session_window: float = SESSION_WINDOW,
        revocations_file_dir: Path | None = None,
        node_id: str = nodes.DEFAULT_NODE_ID,
        vm_lost_after: float = 0.0,
        lost_grace: float = LOST_GRACE,
    ) -> None:
        self.db = db
        #: Seconds offline after which a VM's workspaces are placed again (0: never).
        self.vm_lost_after = vm_lost_after
        self.lost_grace = lost_grace
        self._linked_at: float | None = None
        #: This node: VMs its relayd reports are recorded on it.
        self.node_id = node_id
        #: VMs this node's relayd reported online since the link came up (not
        #: forgotten when they go: a VM that went to another node is "moved").
        self.served_vms: set[str] = set()
        self.interval = interval
        self.session_window = session_window
        #: Where ``revoked.json`` is written (None: not written).
        self.revocations_file_dir = revocations_file_dir
        #: The list relayd accepted last on this link (None: not sent yet).
        self._revocations_sent: Revocations | None = None
        self._revocations_written: Revocations | None = None
        self._revocations_lock = trio.Lock()
        self.link: RelayLink | None = None
        self.online_vms: set[str] = set()
        #: What relayd was last told: workspace id -> VM id.
        self._relay_table: dict[str, str] = {}
        self._to_disconnect: set[str] = set()
        self._wakeup = trio.Event()
        #: Held while relayd's table is read from the database and sent.
        self._table_lock = trio.Lock()
        #: Audit rows (``add_audit``'s arguments) and statuses not stored yet.
        self._held_audit: collections.deque[tuple[Any, ...]] = collections.deque()
        self._held_status: dict[str, str] = {}
        self._held_lock = trio.Lock()
        #: Audit events dropped because more than HELD_EVENTS were held.
        self.audit_dropped = 0
        self._event_done = trio.Event()
        #: Waits until the next relayd event has been handled. An attribute,
        #: renewed after every event, so that taken *before* looking at the
        #: state (``changed = coordinator.wait_event``; look; ``await
        #: changed()``) it also wakes for an event handled while looking.
        self.wait_event: Callable[[], Awaitable[None]] = self._event_done.wait

    def attach(self, link: RelayLink) -> None:
        """Use ``link`` for requests."""
        self.link = link

    def kick(self) -> None:
        """Ask the reconciler for a pass now (placement, disconnects)."""
        self._wakeup.set()

    # --- link callbacks ---------------------------------------------------

    async def on_connect(self, link: RelayLink) -> None:
        """Full resync: every VM offline until relayd reports it, then ``sync``."""
        node_id = self.node_id
        await self.db.run(lambda c: store.set_all_vms_offline(c, node_id=node_id))
        self.online_vms.clear()
        self._linked_at = trio.current_time()
        async with self._table_lock:
            placed = await self.db.run(store.assignments)
            await link.request_while_connecting("sync", workspaces=sync_entries(placed))
            self._relay_table = {w.id: w.vm_id for w in placed if w.vm_id is not None}
        self._revocations_sent = None
        await self._send_revocations(link.request_while_connecting)
        self.kick()

    async def on_event(self, event: dict[str, Any]) -> None:
        """Store what relayd reports. Never waits on the link (see relaylink)."""
        try:
            await self._handle_event(event)
        finally:
            self._event_done.set()
            self._event_done = trio.Event()
            self.wait_event = self._event_done.wait

    async def _handle_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("vm_online", "vm_offline"):
            vm_id = _text(event.get("vmId"))
            if vm_id is None:
                return
            online = kind == "vm_online"
            node_id = self.node_id
            vm = await self.db.run(lambda c: store.set_vm_online(c, vm_id, online, node_id=node_id))
            if online and (vm is None or vm.revoked):
                log.warning(
                    "revoked or unknown VM came online; cutting it off", extra={"vmId": vm_id}
                )
                self._to_disconnect.add(vm_id)
                self.kick()
            elif online:
                self.online_vms.add(vm_id)
                self.served_vms.add(vm_id)
                self.kick()
            else:
                self.online_vms.discard(vm_id)
        elif kind == "workspace_status":
            workspace_id, status = _text(event.get("workspaceId")), event.get("status")
            if workspace_id is not None and isinstance(status, str) and status in _REPORTABLE:
                if workspace_id in self._held_status or len(self._held_status) < HELD_EVENTS:
                    self._held_status.pop(workspace_id, None)  # the newest goes last
                    self._held_status[workspace_id] = status
                await self.store_held()
        elif kind == "audit":
            await self._store_audit(event)
        else:
            log.info("ignoring relayd event", extra={"event": kind})

    async def _store_audit(self, event: dict[str, Any]) -> None:
        workspace_id = _text(event.get("workspaceId"))
        action = _short(event.get("action"), MAX_ACTION_LENGTH)
        if workspace_id is None or action is None:
            log.warning("malformed audit event from relayd")
            return
        user_id = _short(event.get("userId"), 200)
        request_id = _short(event.get("requestId"), 200)
        detail = _short(event.get("detail"), MAX_DETAIL_LENGTH)
        allow = event.get("allow")
        if detail is None and isinstance(allow, bool):
            # relayd adds `allow` to permission_response audits.
            detail = "allowed" if allow else "denied"
        at = parse_time(event.get("at"))
        session_id = audit_session(event.get("sessionId"))
        if len(self._held_audit) >= HELD_EVENTS:
            self._held_audit.popleft()
            self.audit_dropped += 1
            log.error("audit event dropped: too many held while the database is away")
        self._held_audit.append((workspace_id, user_id, action, request_id, at, detail, session_id))
        await self.store_held()

    async def store_held(self) -> None:
        """Store the held audit events (in order) and statuses; keep them while
        the database is away (they are tried again by the next event or pass)."""
        # One at a time (the event reader and the reconciler both call this),
        # so that no held row is stored twice.
        async with self._held_lock:
            try:
                await self._store_held()
            except _DATABASE_AWAY as exc:
                log.warning(
                    "database away; events held for the next try",
                    extra={
                        "audit": len(self._held_audit),
                        "statuses": len(self._held_status),
                        "reason": type(exc).__name__,
                    },
                )

    async def _store_held(self) -> None:
        while self._held_audit:
            await self.db.run(partial(_add_audit, self._held_audit[0]))
            self._held_audit.popleft()
        while self._held_status:
            workspace_id, status = next(iter(self._held_status.items()))
            await self.db.run(
                partial(store.set_reported_status, workspace_id=workspace_id, status=status)
            )
            # A newer status may have come meanwhile: keep that one.
            if self._held_status.get(workspace_id) == status:
                del self._held_status[workspace_id]

    # --- actions ------------------------------------------------------------

    async def release(self, workspace_id: str) -> None:
        """Tell relayd a workspace is gone; when the link is down, the next sync says it."""
        if self.link is None:
            return
        try:
            # After any sync in flight, which may still have listed it.
            async with self._table_lock:
                self._relay_table.pop(workspace_id, None)
                await self.link.request("release", workspaceId=workspace_id)
        except (RelayUnavailable, RelayRefused) as exc:
            log.warning(
                "release not delivered", extra={"workspaceId": workspace_id, "reason": str(exc)}
            )

    async def _assign(self, workspace: store.Workspace) -> None:
        if self.link is None or workspace.vm_id is None:
            return
        try:
            await self.link.request("assign", **sync_entry(workspace))
        except (RelayUnavailable, RelayRefused) as exc:
            log.warning(
                "assign not delivered", extra={"workspaceId": workspace.id, "reason": str(exc)}
            )
        else:
            self._relay_table[workspace.id] = workspace.vm_id

    async def run(self) -> None:
        """The reconciler: one pass when kicked, and every ``interval`` seconds."""
        while True:
            with trio.move_on_after(self.interval):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            try:
                await self._pass()
            except (RelayUnavailable, RelayRefused) as exc:
                log.warning("reconcile pass cut short", extra={"reason": str(exc)})
            except Exception:
                # E.g. the database briefly unavailable: the next pass tries again.
                log.exception("reconcile pass failed")

    async def _pass(self) -> None:
        await self.store_held()
        link = self.link
        if link is None or not link.connected:
            # relayd is away: keep its file current for when it starts again.
            await self._current_revocations()
            return
        revoked = {vm.id for vm in await self.db.run(store.list_vms) if vm.revoked}
        self._to_disconnect |= self.online_vms & revoked
        self.online_vms -= revoked
        for vm_id in sorted(self._to_disconnect):
            await link.request("disconnect", vmId=vm_id)
            self._to_disconnect.discard(vm_id)
        await self._tell_moved(link)
        # Read and send under the lock, so a release cannot slip in between
        # and be undone by a sync that still lists the workspace.
        async with self._table_lock:
            await self._give_up_on_lost_vms()
            for workspace in await self.db.run(store.place_pending):
                await self._assign(workspace)
            placed = await self.db.run(store.assignments)
            wanted = {w.id: w.vm_id for w in placed if w.vm_id is not None}
            if wanted != self._relay_table:
                log.info("relayd's table differs from the database; re-syncing")
                await link.request("sync", workspaces=sync_entries(placed))
                self._relay_table = wanted
                self._revocations_sent = None  # the list follows every sync, whole
        await self._send_revocations(link.request)

    async def _give_up_on_lost_vms(self) -> None:
        """Place again the workspaces of VMs away for longer than ``vm_lost_after``."""
        after = self.vm_lost_after
        linked = self._linked_at
        if after <= 0 or linked is None or trio.current_time() - linked < self.lost_grace:
            return
        given_up = await self.db.run(lambda c: lost.give_up_on_lost_vms(c, after))
        if given_up:
            log.warning(
                "VMs away too long; their workspaces are placed again",
                extra={"workspaceIds": given_up, "vmLostAfter": after},
            )

    async def _tell_moved(self, link: RelayLink) -> None:
        """Close the clients of workspaces whose VM this relayd served and another node has now."""
        if not self.served_vms:
            return
        recorded = await self.db.run(nodes.vm_nodes)
        gone = nodes.moved_away(self.served_vms, recorded, self.node_id)
        if not gone:
            return
        workspace_ids = await self.db.run(lambda c: nodes.workspaces_of(c, gone))
        if workspace_ids:
            reply = await link.request("moved", workspaceIds=workspace_ids)
            log.info(
                "VMs moved to other nodes; their clients told",
                extra={"vmIds": sorted(gone), "closed": reply.get("closed")},
            )
        self.served_vms -= gone
        self.online_vms -= gone

    async def _current_revocations(self) -> Revocations:
        """The list as the database has it; written to ``revoked.json`` when it changed."""
        ttl = self.session_window
        # One writer at a time: the link's on_connect and a reconciler pass
        # (relayd away) may both get here, and share revoked.json's temp file.
        async with self._revocations_lock:
            current = await self.db.run(lambda c: revocation.build(c, ttl))
            if current != self._revocations_written and self.revocations_file_dir is not None:
                directory = self.revocations_file_dir
                await trio.to_thread.run_sync(revocation.write, directory, current)
                self._revocations_written = current
        return current

    async def _send_revocations(self, request: Callable[..., Awaitable[dict[str, Any]]]) -> None:
        """Send the whole revocation list if relayd has not accepted this one yet."""
        current = await self._current_revocations()
        if current == self._revocations_sent:
            return
        try:
            reply = await request("revoke", **current.to_json())
        except RelayRefused as exc:
            if exc.code != "unknown_type":
                raise
            # A relayd from before revocation lists (an upgrade half done): the
            # link still serves; this is said once per connection.
            log.error(
                "relayd does not know 'revoke': revoked tokens stay valid there "
                "until they expire; upgrade relayd"
            )
            reply = {}
        self._revocations_sent = current
        if reply.get("closed"):
            log.info("revoked tokens' connections closed", extra={"closed": reply.get("closed")})


def _add_audit(row: tuple[Any, ...], conn: sa.Connection) -> bool:
    return store.add_audit(conn, *row)

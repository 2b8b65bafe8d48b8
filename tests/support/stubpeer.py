"""A stand-in for a relayd peer: what ``relayd.relay.Relay`` uses of one, no socket."""

from __future__ import annotations

import collections
import json
from typing import Any

from relayd.outbox import Entry, Outbox
from relayd.ratelimit import TokenBucket
from relayd.relay import Ownership, Relay
from relayd.room import Cursor
from wire.messages import Subscribe
from wire.protocol import Scope
from wire.tokens import Claims


class StubPeer:
    """A connection as the relay sees it: an outbox, a ``sub``, a close code
    (what :class:`relayd.router.ClientLike` and :class:`relayd.router.VmLike` ask)."""

    closing = False
    close_code: int | None = None
    outbox: Outbox
    sub: str
    scope: Scope = Scope.CLIENT

    def __init__(self, **fields: Any) -> None:
        self.errors: list[tuple[str, str]] = []
        self.bucket = TokenBucket(rate=1000.0, burst=1000, now=0.0)
        self.ready: dict[Cursor, None] = {}
        # What relayd's ClientPeer and VmPeer start with.
        self.subscriptions: set[tuple[str, str]] = set()
        self.logs: dict[str, dict[str, tuple[str, int]]] = {}
        self.statuses: dict[str, dict[str, tuple[str, str | None]]] = {}
        self.hello_done = False
        self.error_routes: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
        self.__dict__.update(fields)

    def wake(self, cursor: Cursor) -> None:
        """Note a cursor with something to send, as a real peer's writer would."""
        self.ready[cursor] = None

    def send_or_drop(self, frame: str) -> None:
        """Queue a frame (a full queue is not expected here)."""
        assert self.outbox.offer(frame)

    def send_error(self, code: Any, message: str, **kwargs: Any) -> None:
        """Keep the ``error`` relayd would send, as (code, message)."""
        self.errors.append((str(code), message))

    def close(self, code: int, reason: str = "") -> None:
        """Remember the code; the outbox closes as a real peer's does."""
        self.closing = True
        self.close_code = code
        self.outbox.close()

    def log_extra(self, **more: Any) -> dict[str, Any]:
        """Nothing to add to log lines."""
        return more

    def renew(self, claims: Claims) -> None:
        """A renewed token (nothing to move here)."""


def drain(relay: Relay, peer: Any, max_chars: int = 1 << 30) -> list[Entry]:
    """Everything a peer's writer would send now: its own queue, then its cursors' frames."""
    entries: list[Entry] = list(peer.outbox.take_entries(max_chars))
    while peer.ready:
        for cursor in list(peer.ready):
            got, _chars = relay.read_log(cursor, max_chars)
            entries.extend(got)
            if not cursor.awake:
                del peer.ready[cursor]
    return entries


def frames_of(entries: list[Entry]) -> list[str]:
    """The frames of entries (a shared chunk gives its frames)."""
    out: list[str] = []
    for entry in entries:
        out.extend([entry] if isinstance(entry, str) else entry.frames)
    return out


def room_with_clients(
    relay: Relay, queues: list[int], *, seq: int = 0
) -> tuple[StubPeer, list[StubPeer]]:
    """Workspace w1 on VM vm1 (its log at ``seq``), a user subscribed live per queue size."""
    users = [f"u{i}" for i in range(len(queues))]
    relay.ownership["w1"] = Ownership("w1", "vm1", frozenset(users), {})
    vm = StubPeer(sub="vm1", scope=Scope.VM, outbox=Outbox(1024, 1 << 30))
    relay.vm_joined(vm)
    log = {"workspaceId": "w1", "epoch": "e1", "seq": seq}
    relay.vm_frames(vm, [json.dumps({"type": "hello", "vmId": "vm1", "workspaces": [log]})])
    peers: list[StubPeer] = []
    for user, queue in zip(users, queues, strict=True):
        client = StubPeer(sub=user, outbox=Outbox(queue, 1 << 30))
        relay._subscribe(client, Subscribe(workspace_id="w1", last_seq=seq, epoch="e1"))
        subscribed = frames_of(drain(relay, client))
        assert '"mode":"replay"' in subscribed[0], subscribed
        peers.append(client)
    return vm, peers

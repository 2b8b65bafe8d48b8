"""The revocation list: which tokens relayd refuses although their signature is good.

The control plane builds it from its database and sends it whole, as the
control request ``revoke``, after every ``sync`` and whenever it changes; it
also writes it to ``revoked.json`` beside ``jwks.json``, which relayd reads
at start and on SIGHUP. Three kinds of entry::

    {"sessions": [{"sid": "...", "until": 1800000900}],          # logged out
     "users":    [{"userId": "...", "minGen": 3, "until": ...}], # password changed
     "vms":      ["<vm id>", ...]}                                 # vm revoke

A client token is refused when its ``sid`` is listed, or when its ``sub`` is
listed under ``users`` and its ``gen`` is below ``minGen`` (or missing; a
removed user is listed with a ``minGen`` no token carries). A VM
token is refused when its ``sub`` is listed under ``vms``. ``until`` (epoch
seconds) is when every token the entry could refuse has expired; after it the
entry may be forgotten. VM entries have none: they stay.

Revocations only ever grow (a session never comes back, a generation only
rises, a revoked VM stays revoked), so two lists are merged by union (the
higher ``minGen``, the later ``until``): relayd may merge the file and the
control plane's requests in any order and lose nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from wire.atomicfile import write_atomic
from wire.protocol import Scope
from wire.tokens import Claims

#: Entries of one kind a list may hold (a bigger one is refused as malformed).
MAX_ENTRIES: Final = 200_000
#: Longest id accepted in an entry.
MAX_ID: Final = 200


class BadRevocations(ValueError):
    """A revocation list that is not of the documented form."""


@attrs.frozen
class Revocations:
    """One revocation list (immutable; :func:`merge` makes a new one)."""

    #: Session id -> until.
    sessions: Mapping[str, float] = attrs.field(factory=dict)
    #: User id -> (lowest generation still accepted, until).
    users: Mapping[str, tuple[int, float]] = attrs.field(factory=dict)
    #: Revoked VM ids.
    vms: frozenset[str] = frozenset()

    def refuses(self, claims: Claims) -> str | None:
        """Why a token with ``claims`` is revoked, or None when it is not."""
        if claims.scope is Scope.VM:
            return "the VM was revoked" if claims.sub in self.vms else None
        if claims.sid is not None and claims.sid in self.sessions:
            return "the session has ended"
        entry = self.users.get(claims.sub)
        if entry is not None and (claims.gen is None or claims.gen < entry[0]):
            return "the password was changed"
        return None

    def to_json(self) -> dict[str, Any]:
        """The documented form (sorted, so equal lists give equal text)."""
        return {
            "sessions": [{"sid": s, "until": u} for s, u in sorted(self.sessions.items())],
            "users": [
                {"userId": user, "minGen": gen, "until": until}
                for user, (gen, until) in sorted(self.users.items())
            ],
            "vms": sorted(self.vms),
        }


def merge(a: Revocations, b: Revocations) -> Revocations:
    """Everything either list revokes."""
    sessions = dict(a.sessions)
    for sid, until in b.sessions.items():
        sessions[sid] = max(until, sessions.get(sid, until))
    users = dict(a.users)
    for user, (gen, until) in b.users.items():
        old = users.get(user)
        users[user] = (gen, until) if old is None else (max(gen, old[0]), max(until, old[1]))
    return Revocations(sessions, users, a.vms | b.vms)


def prune(revocations: Revocations, now: float) -> Revocations:
    """Without the entries whose tokens have all expired at ``now``."""
    return Revocations(
        {s: u for s, u in revocations.sessions.items() if u > now},
        {user: e for user, e in revocations.users.items() if e[1] > now},
        revocations.vms,
    )


def _id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise BadRevocations(f"{what} must be a non-empty string of at most {MAX_ID} characters")
    return value


def _number(value: object, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise BadRevocations(f"{what} must be a number")
    try:
        number = float(value)  # a JSON integer may be too big for a float
    except OverflowError:
        raise BadRevocations(f"{what} is out of range") from None
    if not math.isfinite(number):
        raise BadRevocations(f"{what} must be a finite number")
    return number


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list) or len(value) > MAX_ENTRIES:
        raise BadRevocations(f"'{key}' must be a list of at most {MAX_ENTRIES} entries")
    return value


def from_json(obj: object) -> Revocations:
    """Parse the documented form; :class:`BadRevocations` when it is not."""
    if not isinstance(obj, Mapping):
        raise BadRevocations("a revocation list is an object")
    sessions: dict[str, float] = {}
    for entry in _list(obj, "sessions"):
        if not isinstance(entry, Mapping):
            raise BadRevocations("a session entry is an object")
        sessions[_id(entry.get("sid"), "sid")] = _number(entry.get("until"), "until")
    users: dict[str, tuple[int, float]] = {}
    for entry in _list(obj, "users"):
        if not isinstance(entry, Mapping):
            raise BadRevocations("a user entry is an object")
        gen = entry.get("minGen")
        if not isinstance(gen, int) or isinstance(gen, bool) or gen < 0:
            raise BadRevocations("minGen must be a whole number, 0 or more")
        users[_id(entry.get("userId"), "userId")] = (gen, _number(entry.get("until"), "until"))
    vms = frozenset(_id(v, "a VM id") for v in _list(obj, "vms"))
    return Revocations(sessions, users, vms)


def read_file(path: str | Path) -> Revocations:
    """The list in ``path``; an empty list when there is no such file."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return Revocations()
    try:
        return from_json(json.loads(text))
    except ValueError as exc:  # JSONDecodeError is one
        raise BadRevocations(f"{path}: {exc}") from None


def write_file(path: Path, revocations: Revocations) -> None:
    """Write the list atomically, readable by all (it holds ids only, and relayd reads it)."""
    text = json.dumps(revocations.to_json(), separators=(",", ":"))
    write_atomic(path, text.encode(), 0o644)

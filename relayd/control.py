"""The Unix control socket: the control plane's JSON-lines requests, and relayd's events.

trio has no Unix listener helper, so the socket is bound here by hand: created
with the requested mode already in place (umask around ``bind``), then wrapped
in :class:`trio.SocketListener`. Each peer is checked with ``SO_PEERCRED``:
root, relayd's own user, or — only when the mode is 0660 — a member of the
socket's group.
"""

from __future__ import annotations

import contextlib
import grp
import itertools
import json
import logging
import os
import pwd
import socket
import stat
import struct
from pathlib import Path
from typing import Any, Final

import trio

from relayd.control_events import ControlConnection
from relayd.relay import VERSION, Ownership, Relay
from wire.revocations import BadRevocations
from wire.revocations import from_json as revocations_from_json

log = logging.getLogger("relayd.control")

#: Longest request line (a ``sync`` of many workspaces is the big one).
MAX_LINE: Final = 16 * 1024 * 1024
#: Longest id (workspace, VM, user) in a request.
MAX_ID: Final = 200
_names = itertools.count(1)


class RequestError(Exception):
    """A request that cannot be carried out; becomes ``{"ok": false, "error": ...}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def bind_control_socket(path: str, mode: int) -> socket.socket:
    """Bind and listen on a Unix socket at ``path`` with ``mode`` (a stale socket is replaced)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(target.lstat().st_mode):
            raise RuntimeError(f"{path} exists and is not a socket")
        target.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    target.chmod(mode)
    sock.listen(64)
    return sock


def peer_allowed(
    sock: socket.socket | trio.socket.SocketType, socket_path: str, mode: int
) -> tuple[bool, int, int]:
    """Check a connected peer with ``SO_PEERCRED``; returns (allowed, uid, gid)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, gid = struct.unpack("3i", creds)
    if uid in (0, os.geteuid()):
        return True, uid, gid
    if mode & 0o060:
        try:
            sock_gid = Path(socket_path).stat().st_gid
        except OSError:
            return False, uid, gid
        if gid == sock_gid:
            return True, uid, gid
        with contextlib.suppress(KeyError):
            name = pwd.getpwuid(uid).pw_name
            if sock_gid in os.getgrouplist(name, gid) or name in grp.getgrgid(sock_gid).gr_mem:
                return True, uid, gid
    return False, uid, gid


async def serve_control(
    relay: Relay, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the control socket until cancelled."""
    settings = relay.settings
    raw = bind_control_socket(settings.control_socket, settings.control_socket_mode)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(raw))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, lambda s: _serve_peer(relay, s), [listener])
            task_status.started()
    finally:
        # Synchronous on purpose: this runs while the task is being cancelled.
        with contextlib.suppress(OSError):
            Path(settings.control_socket).unlink()  # noqa: ASYNC240


async def _serve_peer(relay: Relay, stream: trio.SocketStream) -> None:
    settings = relay.settings
    allowed, uid, gid = peer_allowed(
        stream.socket, settings.control_socket, settings.control_socket_mode
    )
    name = f"ctl{next(_names)}"
    if not allowed:
        log.warning("control peer refused", extra={"peer": name, "uid": uid, "gid": gid})
        await stream.aclose()
        return
    log.info("control peer connected", extra={"peer": name, "uid": uid})
    conn = ControlConnection(settings.control_queue_lines, 256 * 1024 * 1024, name)
    relay.control.attach(conn)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write_lines, stream, conn, nursery.cancel_scope)
            await _read_lines(relay, stream, conn)
            conn.outbox.close()
    finally:
        relay.control.detach(conn)
        await trio.aclose_forcefully(stream)
        log.info("control peer gone", extra={"peer": name})


async def _write_lines(
    stream: trio.SocketStream, conn: ControlConnection, cancel_scope: trio.CancelScope
) -> None:
    from relayd.outbox import OutboxClosed

    try:
        while True:
            try:
                batch = await conn.outbox.get_batch(1024 * 1024)
            except OutboxClosed:
                return
            await stream.send_all("".join(batch).encode())
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        cancel_scope.cancel()


async def _read_lines(relay: Relay, stream: trio.SocketStream, conn: ControlConnection) -> None:
    buffer = bytearray()
    while True:
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if not data:
            return
        buffer += data
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                reply, events = handle_line(relay, line)
                conn.send(reply)
                for event in events:
                    conn.send(event)
        if len(buffer) > MAX_LINE:
            conn.send(_error_reply(None, "too_large", f"a line is limited to {MAX_LINE} bytes"))
            return


def _error_reply(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


def handle_line(relay: Relay, line: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Carry out one request line; return its reply and the events to write after it."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return _error_reply(None, "bad_request", "a request is one JSON object per line"), []
    if not isinstance(obj, dict):
        return _error_reply(None, "bad_request", "a request is a JSON object"), []
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, (str, int)):
        request_id = None
    try:
        body = _dispatch(relay, obj)
    except RequestError as exc:
        return _error_reply(request_id, exc.code, exc.message), []
    # After a sync the control plane hears every online VM again.
    events = relay.online_vm_events() if obj.get("type") == "sync" else []
    return {"id": request_id, "ok": True, **body}, events


def _dispatch(relay: Relay, obj: dict[str, Any]) -> dict[str, Any]:
    kind = obj.get("type")
    if kind == "hello":
        return {"relayId": relay.relay_id, "version": VERSION}
    if kind == "sync":
        entries = obj.get("workspaces")
        if not isinstance(entries, list):
            raise RequestError("bad_request", "sync needs a list 'workspaces'")
        owners = [_ownership(e) for e in entries]
        relay.sync(owners)
        log.info("ownership synced", extra={"workspaces": len(owners)})
        return {"workspaces": len(owners)}
    if kind == "assign":
        owner = _ownership(obj)
        relay.assign(owner)
        log.info("assigned", extra={"workspaceId": owner.workspace_id, "vmId": owner.vm_id})
        return {}
    if kind == "release":
        workspace_id = _string(obj, "workspaceId")
        relay.release(workspace_id)
        log.info("released", extra={"workspaceId": workspace_id})
        return {}
    if kind == "disconnect":
        user_id, vm_id = obj.get("userId"), obj.get("vmId")
        if (user_id is None) == (vm_id is None):
            raise RequestError("bad_request", "disconnect needs exactly one of userId, vmId")
        if not isinstance(user_id or vm_id, str):
            raise RequestError("bad_request", "userId/vmId must be a string")
        closed = relay.disconnect(
            user_id=user_id if isinstance(user_id, str) else None,
            vm_id=vm_id if isinstance(vm_id, str) else None,
        )
        return {"closed": closed}
    if kind == "moved":
        ids = obj.get("workspaceIds")
        if not isinstance(ids, list) or not all(
            isinstance(i, str) and 0 < len(i) <= MAX_ID for i in ids
        ):
            raise RequestError("bad_request", "moved needs a list of strings 'workspaceIds'")
        closed = relay.moved(ids)
        log.info(
            "workspaces moved to another node", extra={"workspaces": len(ids), "closed": closed}
        )
        return {"closed": closed}
    if kind == "revoke":
        try:
            more = revocations_from_json(obj)
        except BadRevocations as exc:
            raise RequestError("bad_request", str(exc)) from None
        relay.revocations.add(more)
        closed = relay.revocations.close_revoked(relay.all_peers())
        log.info("revocations received", extra={"closed": closed})
        return {"closed": closed}
    if kind == "stats":
        return relay.stats_reply()
    if not isinstance(kind, str):
        raise RequestError("bad_request", "a request needs a string 'type'")
    raise RequestError("unknown_type", f"unknown request type {kind[:64]!r}")


def _string(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise RequestError("bad_request", f"'{key}' must be a non-empty string")
    return value


def _ownership(obj: object) -> Ownership:
    if not isinstance(obj, dict):
        raise RequestError("bad_request", "a workspace entry is an object")
    user_ids = obj.get("userIds")
    if not isinstance(user_ids, list) or not all(isinstance(u, str) for u in user_ids):
        raise RequestError("bad_request", "'userIds' must be a list of strings")
    issue = obj.get("issue", {})
    if not isinstance(issue, dict):
        raise RequestError("bad_request", "'issue' must be an object")
    return Ownership(
        workspace_id=_string(obj, "workspaceId"),
        vm_id=_string(obj, "vmId"),
        user_ids=frozenset(user_ids),
        issue=issue,
    )

"""Start the real relayd as a subprocess on loopback, for integration tests.

Usage (inside a trio test)::

    from tests.support.relayd import start_relayd, recv_json, send_json

    async def test_something(tmp_path):
        async with start_relayd(tmp_path) as relay:
            await relay.control.request("assign", workspaceId="w1", vmId="vm1",
                                        userIds=["u1"], issue={"url": "..."})
            async with relay.connect_vm("vm1") as vm, relay.connect_client("u1") as client:
                await send_json(vm, {"type": "hello", "vmId": "vm1", "workspaces": []})
                ...

What :func:`start_relayd` gives (a :class:`Relayd`):

* ``url`` (``ws://127.0.0.1:PORT``), ``client_url`` and ``vm_url`` (with the
  paths), ``port``, ``metrics_url`` (``http://127.0.0.1:PORT``) — all ports
  chosen by the kernel (relayd is started with port 0 and reports the bound
  addresses in its systemd ``READY=1`` notification, which the helper waits for);
* ``keys`` (:class:`tests.support.keys.KeyRing`), ``client_token(user)``,
  ``vm_token(vm)``; ``jwks_path`` (rewrite it and call ``reload()``, i.e. SIGHUP);
* ``control``: a connected :class:`ControlClient` (``await request(type, **fields)``
  returns the reply dict; ``await next_event(type)`` waits for an event);
  ``open_control()`` opens another; ``control_socket`` is the path;
* ``connect_client(user_id)`` / ``connect_vm(vm_id)``: async context managers
  yielding a trio-websocket connection with the token in ``Authorization``
  (``token=``, ``origin=``, ``bearer_subprotocol=True`` for the browser way);
* ``logs``: relayd's stderr as parsed JSON lines; ``process``;
  ``terminate()`` (SIGTERM, returns the exit code), ``reload()`` (SIGHUP) and
  ``reload_and_wait()``; ``notices``: the systemd notify messages relayd sent.

Keyword arguments of :func:`start_relayd`: ``args`` (extra command-line flags,
e.g. ``["--ping-interval", "0.5"]``), ``env`` (extra environment), ``keys``
(reuse a KeyRing, e.g. the control plane's own). The token leeway defaults to
0 here so that expiry tests are exact; pass ``--token-leeway`` to change it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket

from tests.support.keys import KeyRing
from wire.protocol import CLIENT_PATH, SUBPROTOCOL, VM_PATH

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


class ControlError(Exception):
    """The control socket answered ``ok: false``."""


class ControlClient:
    """A JSON-lines client of relayd's control socket (replies and events)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.events: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self._changed = trio.Event()
        self._ids = itertools.count(1)
        self.closed = False

    async def _reader(self) -> None:
        buffer = b""
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    obj = json.loads(line)
                    (self.replies if "ok" in obj else self.events).append(obj)
                self._changed.set()
                self._changed = trio.Event()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.closed = True
        self._changed.set()

    async def _wait(self, find: Callable[[], Any]) -> Any:
        while True:
            found = find()
            if found is not None:
                return found
            if self.closed:
                raise ControlError("control connection closed")
            await self._changed.wait()

    async def send_line(self, line: bytes) -> None:
        """Send raw bytes (a newline is added)."""
        await self.stream.send_all(line + b"\n")

    async def request(self, type: str, *, check: bool = True, **fields: Any) -> dict[str, Any]:
        """Send a request and wait for its reply (raises ControlError on ``ok: false``)."""
        request_id = f"t{next(self._ids)}"
        await self.send_line(json.dumps({"id": request_id, "type": type, **fields}).encode())

        def find() -> dict[str, Any] | None:
            return next((r for r in self.replies if r.get("id") == request_id), None)

        reply: dict[str, Any] = await self._wait(find)
        if check and not reply["ok"]:
            raise ControlError(reply["error"])
        return reply

    async def next_reply(self) -> dict[str, Any]:
        """Wait for, and take, the oldest reply not yet taken."""

        def find() -> dict[str, Any] | None:
            return self.replies.pop(0) if self.replies else None

        result: dict[str, Any] = await self._wait(find)
        return result

    async def next_event(
        self, type: str | None = None, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """Wait for, and take, the oldest event of this type (and matching ``where``)."""

        def find() -> dict[str, Any] | None:
            for i, event in enumerate(self.events):
                if (type is None or event.get("type") == type) and (where is None or where(event)):
                    return self.events.pop(i)
            return None

        result: dict[str, Any] = await self._wait(find)
        return result

    async def assign(
        self,
        workspace_id: str,
        vm_id: str,
        user_ids: Sequence[str],
        issue: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``assign`` with a default issue."""
        return await self.request(
            "assign",
            workspaceId=workspace_id,
            vmId=vm_id,
            userIds=list(user_ids),
            issue=dict(
                issue
                or {
                    "url": f"https://github.com/o/r/issues/1#{workspace_id}",
                    "owner": "o",
                    "repo": "r",
                    "number": 1,
                }
            ),
        )


@contextlib.asynccontextmanager
async def open_control(path: Path | str) -> AsyncIterator[ControlClient]:
    """Connect to a control socket; the client reads in the background while open."""
    stream = await trio.open_unix_socket(str(path))
    client = ControlClient(stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client._reader)
        try:
            yield client
        finally:
            # Close before cancelling: an await inside the cancelled nursery would
            # raise Cancelled, which would replace (and so hide) the exception
            # that is leaving the body, e.g. a failed assertion of the test.
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()


class Relayd:
    """A running relayd subprocess; see the module docstring."""

    def __init__(
        self,
        *,
        process: trio.Process,
        keys: KeyRing,
        jwks_path: Path,
        control_socket: Path,
        host: str,
        port: int,
        metrics: tuple[str, int] | None,
        logs: list[dict[str, Any]],
        notices: Notices,
    ) -> None:
        self.process = process
        self.notices = notices
        self.keys = keys
        self.jwks_path = jwks_path
        self.control_socket = control_socket
        self.host = host
        self.port = port
        self.url = f"ws://{host}:{port}"
        self.client_url = self.url + CLIENT_PATH
        self.vm_url = self.url + VM_PATH
        self.metrics_url = f"http://{metrics[0]}:{metrics[1]}" if metrics else None
        self.logs = logs
        self.control: ControlClient  # set by start_relayd

    def client_token(self, user_id: str, *, ttl: float = 300) -> str:
        """A valid client token."""
        return self.keys.client_token(user_id, ttl=ttl)

    def vm_token(self, vm_id: str, *, ttl: float = 300) -> str:
        """A valid VM token."""
        return self.keys.vm_token(vm_id, ttl=ttl)

    def open_control(self) -> contextlib.AbstractAsyncContextManager[ControlClient]:
        """Another control-socket connection."""
        return open_control(self.control_socket)

    def connect(
        self,
        path: str,
        *,
        token: str | None = None,
        origin: str | None = None,
        bearer_subprotocol: bool = False,
        subprotocols: Sequence[str] | None = None,
        extra_headers: Sequence[tuple[bytes, bytes]] = (),
        max_message_size: int = 64 * 1024 * 1024,
    ) -> contextlib.AbstractAsyncContextManager[WebSocketConnection]:
        """Open a WebSocket to ``path`` with ``token`` sent the chosen way."""
        protocols = list(subprotocols) if subprotocols is not None else [SUBPROTOCOL]
        headers = list(extra_headers)
        if token is not None:
            if bearer_subprotocol:
                protocols.append(f"bearer.{token}")
            else:
                headers.append((b"Authorization", f"Bearer {token}".encode()))
        if origin is not None:
            headers.append((b"Origin", origin.encode()))
        return open_websocket(
            self.host,
            self.port,
            path,
            use_ssl=False,
            subprotocols=protocols,
            extra_headers=headers,
            max_message_size=max_message_size,
        )

    def connect_client(
        self, user_id: str, *, token: str | None = None, **kwargs: Any
    ) -> contextlib.AbstractAsyncContextManager[WebSocketConnection]:
        """A client connection for ``user_id`` (or with the given ``token``)."""
        return self.connect(CLIENT_PATH, token=token or self.client_token(user_id), **kwargs)

    def connect_vm(
        self, vm_id: str, *, token: str | None = None, **kwargs: Any
    ) -> contextlib.AbstractAsyncContextManager[WebSocketConnection]:
        """A VM connection for ``vm_id`` (or with the given ``token``)."""
        return self.connect(VM_PATH, token=token or self.vm_token(vm_id), **kwargs)

    def reload(self) -> None:
        """SIGHUP: relayd re-reads the JWKS file (see :meth:`reload_and_wait`)."""
        self.process.send_signal(signal.SIGHUP)

    async def reload_and_wait(self) -> None:
        """SIGHUP, and wait until relayd says ``READY=1`` again (the reload is done)."""
        seen = len(self.notices.messages)
        self.reload()
        await self.notices.wait_for("RELOADING", "1", after=seen)
        await self.notices.wait_for("READY", "1", after=seen)

    async def terminate(self) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.process.wait()

    def log_messages(self) -> list[str]:
        """The ``msg`` of every log line so far."""
        return [str(line.get("msg")) for line in self.logs]


async def send_json(ws: WebSocketConnection, obj: Mapping[str, Any]) -> None:
    """Send one JSON text frame."""
    await ws.send_message(json.dumps(obj))


async def recv_json(ws: WebSocketConnection) -> dict[str, Any]:
    """Receive one frame and parse it as a JSON object."""
    frame = await ws.get_message()
    obj = json.loads(frame)
    assert isinstance(obj, dict)
    return obj


async def close_code(ws: WebSocketConnection) -> int:
    """Read (and drop) frames until the connection closes; return the close code."""
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed as exc:
        reason = exc.reason
    if reason is None:
        raise AssertionError("closed without a close reason")
    return int(reason.code)


async def recv_until(
    ws: WebSocketConnection, predicate: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Receive frames until one matches; returns all of them, the match last."""
    seen: list[dict[str, Any]] = []
    while True:
        obj = await recv_json(ws)
        seen.append(obj)
        if predicate(obj):
            return seen


async def _drain_stderr(stream: trio.abc.ReceiveStream, logs: list[dict[str, Any]]) -> None:
    buffer = b""
    async for chunk in stream:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            try:
                logs.append(json.loads(line))
            except ValueError:
                logs.append({"msg": line.decode(errors="replace"), "raw": True})


def _parse_status(message: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in message.splitlines():
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


@contextlib.asynccontextmanager
async def start_relayd(
    tmp_path: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    keys: KeyRing | None = None,
    metrics: bool = True,
    source: Path | None = None,
    wrapper: Sequence[str] = (),
    pass_fds: Sequence[int] = (),
) -> AsyncIterator[Relayd]:
    """Run relayd on free loopback ports with test keys; stop it (SIGTERM) on exit.

    ``source``: another checkout to run relayd from (``python -m relayd`` in
    that folder), e.g. to compare versions in ``bench/relay.py``. ``wrapper``:
    a command line that runs relayd's (given as its arguments), with
    ``pass_fds`` inherited, e.g. to hand relayd a socket as systemd does.
    """
    keys = keys or KeyRing()
    jwks_path = keys.write_jwks(tmp_path / "jwks.json")
    # Unix socket paths are limited to 108 bytes: pytest's tmp_path can be longer.
    sockdir = Path(tempfile.mkdtemp(prefix="rd-", dir="/tmp"))
    control_socket = sockdir / "control.sock"
    notify_path = sockdir / "notify.sock"
    notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await notify.bind(str(notify_path))
    argv = [
        sys.executable,
        "-m",
        "relayd",
        "--listen",
        "127.0.0.1:0",
        "--control-socket",
        str(control_socket),
        "--jwks",
        str(jwks_path),
        "--metrics-listen",
        "127.0.0.1:0" if metrics else "",
        "--token-leeway",
        "0",
        *args,
    ]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYD_")}
    child_env.update({"NOTIFY_SOCKET": str(notify_path), "PYTHONUNBUFFERED": "1"})
    child_env.update(env or {})
    logs: list[dict[str, Any]] = []
    try:
        async with trio.open_nursery() as nursery:
            process = await trio.lowlevel.open_process(
                [*wrapper, *argv],
                stderr=subprocess.PIPE,
                env=child_env,
                cwd=str(source or REPO),
                pass_fds=tuple(pass_fds),
            )
            assert process.stderr is not None
            nursery.start_soon(_drain_stderr, process.stderr, logs)
            try:
                notices = Notices()
                nursery.start_soon(notices.read, notify)
                status = await _wait_ready(notices, process, logs)
                host, port = status["ws"].rsplit(":", 1)
                metrics_address = None
                if "metrics" in status:
                    mhost, mport = status["metrics"].rsplit(":", 1)
                    metrics_address = (mhost, int(mport))
                relay = Relayd(
                    process=process,
                    keys=keys,
                    jwks_path=jwks_path,
                    control_socket=control_socket,
                    host=host,
                    port=int(port),
                    metrics=metrics_address,
                    logs=logs,
                    notices=notices,
                )
                async with relay.open_control() as control:
                    relay.control = control
                    yield relay
            finally:
                with trio.move_on_after(STOP_TIMEOUT) as stopping:
                    stopping.shield = True
                    if process.returncode is None:
                        process.send_signal(signal.SIGTERM)
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    with trio.CancelScope(shield=True):
                        await process.wait()
                nursery.cancel_scope.cancel()
    finally:
        notify.close()
        shutil.rmtree(sockdir, ignore_errors=True)


class Notices:
    """The systemd notify messages relayd sent (each parsed into ``KEY: value``)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self._changed = trio.Event()

    async def read(self, sock: trio.socket.SocketType) -> None:
        """Collect datagrams until cancelled."""
        while True:
            data = await sock.recv(65536)
            self.messages.append(_parse_status(data.decode()))
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, key: str, value: str, *, after: int = 0) -> dict[str, str]:
        """Wait for a message with ``key=value`` at index ``after`` or later."""
        while True:
            for message in self.messages[after:]:
                if message.get(key) == value:
                    return message
            await self._changed.wait()


async def _wait_ready(
    notices: Notices, process: trio.Process, logs: list[dict[str, Any]]
) -> dict[str, str]:
    with trio.move_on_after(START_TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def watch_exit() -> None:
                await process.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_exit)
            ready = await notices.wait_for("READY", "1")
            nursery.cancel_scope.cancel()
            status = ready.get("STATUS", "")
            return dict(part.split("=", 1) for part in status.split() if "=" in part)
    raise RuntimeError(
        f"relayd did not become ready (exit code {process.returncode}); log:\n"
        + "\n".join(json.dumps(line) for line in logs[-30:])
    )

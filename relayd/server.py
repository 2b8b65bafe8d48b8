"""The WebSocket side: accept or refuse each handshake, then run the peer.

trio-websocket's ``serve_websocket`` takes one ``max_message_size`` for every
connection, but clients and VMs have different frame limits (1 MiB and 16 MiB
by default). So each connection is wrapped by hand with
:func:`trio_websocket.wrap_server_stream` at the VM limit, and a client's
connection gets the client limit once its path is known. The limit counts
characters of a text frame (``len()``), which is what relayd documents.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import trio
from trio_websocket import WebSocketConnection, WebSocketRequest, wrap_server_stream

from relayd.handshake import Accepted, Refused, check_handshake
from relayd.outbox import Outbox
from relayd.peer import Peer
from relayd.relay import ClientPeer, Relay, VmPeer
from relayd.settings import Settings
from relayd.wsframes import parse_frames_fast, read_in_bulk
from wire.protocol import Scope
from wire.tokens import Claims

log = logging.getLogger("relayd.server")

P = TypeVar("P", bound=Peer)

#: Bytes read from the socket at a time (trio-websocket's default is 4 KiB).
RECEIVE_BUFFER: Final = 64 * 1024
#: Frames trio-websocket holds before it stops reading a peer's socket. Small,
#: so a client that sends faster than relayd forwards is soon not read at all.
MESSAGE_QUEUE: Final = 4
#: ... and for a VM, whose frames relayd takes in bulk (see relayd.wsframes).
VM_MESSAGE_QUEUE: Final = 64


async def handle_connection(relay: Relay, stream: trio.SocketStream) -> None:
    """Serve one TCP connection from handshake to close."""
    settings = relay.settings
    remote = _remote(stream)
    async with trio.open_nursery() as nursery:
        try:
            with trio.fail_after(settings.handshake_timeout):
                request = await wrap_server_stream(
                    nursery,
                    stream,
                    message_queue_size=MESSAGE_QUEUE,
                    max_message_size=settings.max_vm_frame,
                    receive_buffer_size=RECEIVE_BUFFER,
                )
        except trio.TooSlowError:
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()
            return
        try:
            await _serve_request(relay, request, stream, remote)
        finally:
            nursery.cancel_scope.cancel()


async def _serve_request(
    relay: Relay, request: WebSocketRequest, stream: trio.SocketStream, remote: str
) -> None:
    settings = relay.settings
    decision: Accepted | Refused
    if relay.shutting_down:
        decision = Refused(503, "shutting_down", "relayd is shutting down")
    else:
        decision = check_handshake(
            target=request.path,
            headers=request.headers,
            subprotocols=request.proposed_subprotocols,
            verifier=relay.verifier,
            allowed_origins=settings.allowed_origins,
        )
    if (
        isinstance(decision, Accepted)
        and decision.scope is Scope.CLIENT
        and relay.client_count(decision.claims.sub) >= settings.max_connections_per_user
    ):
        decision = Refused(429, "connection_limit", "too many connections for this user")
    if isinstance(decision, Refused):
        relay.stats.refused += 1
        reasons = relay.stats.refused_reasons
        reasons[decision.reason] = reasons.get(decision.reason, 0) + 1
        log.info(
            "handshake refused",
            extra={"remote": remote, "status": decision.status, "reason": decision.reason},
        )
        with trio.move_on_after(settings.close_timeout):
            await request.reject(
                decision.status,
                extra_headers=[(b"Content-Type", b"application/json")],
                body=decision.body(),
            )
        await trio.aclose_forcefully(stream)
        return
    if decision.scope is Scope.VM:
        # Before accepting: the VM's first frame may follow the handshake at once.
        parse_frames_fast(request._connection)
    ws = await request.accept(subprotocol=decision.subprotocol)
    if decision.scope is Scope.CLIENT:
        # The one private attribute relayd touches: see the module docstring.
        ws._max_message_size = settings.max_client_frame
        outbox = Outbox(settings.client_queue_messages, settings.client_queue_bytes)
        client = _new_peer(ClientPeer, ws, stream, decision.claims, outbox, settings, remote)
        await _serve_peer(
            client, "client", relay, relay.client_joined, relay.client_left, relay.read_client
        )
    else:
        read_in_bulk(ws, VM_MESSAGE_QUEUE)
        outbox = Outbox(settings.vm_queue_messages, settings.vm_queue_bytes)
        vm = _new_peer(VmPeer, ws, stream, decision.claims, outbox, settings, remote)
        await _serve_peer(vm, "vm", relay, relay.vm_joined, relay.vm_left, relay.read_vm)


def _new_peer(
    cls: type[P],
    ws: WebSocketConnection,
    stream: trio.SocketStream,
    claims: Claims,
    outbox: Outbox,
    settings: Settings,
    remote: str,
) -> P:
    """A client or VM peer with the settings every peer shares."""
    return cls(
        ws,
        stream,
        claims,
        outbox=outbox,
        ping_interval=settings.ping_interval,
        close_timeout=settings.close_timeout,
        token_leeway=settings.token_leeway,
        remote=remote,
    )


async def _serve_peer(
    peer: P,
    kind: str,
    relay: Relay,
    joined: Callable[[P], None],
    left: Callable[[P], None],
    reader: Callable[[Peer], Awaitable[None]],
) -> None:
    """Book a peer with the relay, run it until it closes, then unbook it."""
    peer.count_out = relay.counter_out(kind)
    peer.frame_cache = relay.frame_cache
    joined(peer)
    log.info(f"{kind} connected", extra=peer.log_extra(remote=peer.remote))
    try:
        await peer.run(reader)
    finally:
        left(peer)
        log.info(f"{kind} gone", extra=peer.log_extra(code=peer.close_code))


def _remote(stream: trio.SocketStream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"

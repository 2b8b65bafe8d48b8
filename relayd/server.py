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
from typing import Final

import trio
from trio_websocket import WebSocketRequest, wrap_server_stream

from relayd.handshake import Accepted, Refused, check_handshake
from relayd.outbox import Outbox
from relayd.relay import ClientPeer, Relay, VmPeer
from relayd.wsframes import parse_frames_fast, read_in_bulk
from wire.protocol import Scope

log = logging.getLogger("relayd.server")

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
    claims = decision.claims
    if decision.scope is Scope.CLIENT:
        # The one private attribute relayd touches: see the module docstring.
        ws._max_message_size = settings.max_client_frame
        client = ClientPeer(
            ws,
            stream,
            claims,
            outbox=Outbox(settings.client_queue_messages, settings.client_queue_bytes),
            ping_interval=settings.ping_interval,
            close_timeout=settings.close_timeout,
            token_leeway=settings.token_leeway,
            remote=remote,
        )
        client.count_out = relay.counter_out("client")
        client.frame_cache = relay.frame_cache
        relay.client_joined(client)
        log.info("client connected", extra=client.log_extra(remote=remote))
        try:
            await client.run(relay.read_client)
        finally:
            relay.client_left(client)
            log.info("client gone", extra=client.log_extra(code=client.close_code))
    else:
        read_in_bulk(ws, VM_MESSAGE_QUEUE)
        vm = VmPeer(
            ws,
            stream,
            claims,
            outbox=Outbox(settings.vm_queue_messages, settings.vm_queue_bytes),
            ping_interval=settings.ping_interval,
            close_timeout=settings.close_timeout,
            token_leeway=settings.token_leeway,
            remote=remote,
        )
        vm.count_out = relay.counter_out("vm")
        vm.frame_cache = relay.frame_cache
        relay.vm_joined(vm)
        log.info("vm connected", extra=vm.log_extra(remote=remote))
        try:
            await vm.run(relay.read_vm)
        finally:
            relay.vm_left(vm)
            log.info("vm gone", extra=vm.log_extra(code=vm.close_code))


def _remote(stream: trio.SocketStream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"

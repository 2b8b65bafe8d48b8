"""The WebSocket side: accept or refuse each handshake, then run the peer.

The handshake is read with h11 (:mod:`relayd.wsupgrade`) and decided by
:func:`relayd.handshake.check_handshake` before anything is accepted; the
accepted connection is relayd's own (:mod:`relayd.wsconn`), with the frame
limit of its kind (clients 1 MiB, VMs 16 MiB by default, counted in
characters of a text frame, ``len()``, which is what relayd documents).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import trio

from relayd.handshake import Accepted, Refused, check_handshake
from relayd.outbox import Outbox
from relayd.peer import Peer
from relayd.ratelimit import TokenBucket
from relayd.relay import ClientPeer, Relay, VmPeer
from relayd.wsconn import ConnectionClosed, WebSocket
from relayd.wsupgrade import BadUpgrade, Handshake
from wire.protocol import CloseCode, Scope
from wire.tokens import Claims

log = logging.getLogger("relayd.server")

P = TypeVar("P", bound=Peer)

#: Bytes read from a VM's socket at a time: every whole frame in a read is
#: routed in one go, so each client's writer finds them queued together.
VM_RECEIVE_BYTES: Final = 64 * 1024
#: Bytes read from a client's socket at a time. What one read brings is
#: handled before the next read, so this bounds what relayd holds of a client
#: that sends faster than relayd forwards (beside one incomplete frame).
CLIENT_RECEIVE_BYTES: Final = 16 * 1024


async def handle_connection(relay: Relay, stream: trio.SocketStream) -> None:
    """Serve one TCP connection from handshake to close.

    The guard of every connection: only a protocol error leaves the parsing
    layer, and any other exception while serving this connection closes it
    alone (1011 when it got that far), logged with its traceback and counted
    in ``relayd_internal_errors_total``; never the process, never another
    connection.
    """
    try:
        await _handle_connection(relay, stream)
    except Exception:
        _internal_error(relay, {"remote": _remote(stream)})
        await trio.aclose_forcefully(stream)


def _internal_error(relay: Relay, extra: dict[str, object]) -> None:
    """Count and log (with the traceback being handled) a fault on one connection."""
    relay.stats.internal_errors += 1
    log.error("internal error; closing the connection", exc_info=True, extra=extra)


async def _handle_connection(relay: Relay, stream: trio.SocketStream) -> None:
    settings = relay.settings
    remote = _remote(stream)
    upgraded = await _upgrade(relay, stream, remote)
    if upgraded is None:
        return
    decision, pending = upgraded
    is_client = decision.scope is Scope.CLIENT
    ws = WebSocket(
        stream,
        max_message_chars=settings.max_client_frame if is_client else settings.max_vm_frame,
        receive_size=CLIENT_RECEIVE_BYTES if is_client else VM_RECEIVE_BYTES,
        pending=pending,
    )
    if is_client:
        outbox = Outbox(settings.client_queue_messages, settings.client_queue_bytes)
        bucket = TokenBucket(settings.client_rate, settings.client_burst, trio.current_time())
        client = _new_peer(ClientPeer, ws, decision.claims, outbox, relay, remote, bucket=bucket)
        await _serve_peer(
            client, "client", relay, relay.client_joined, relay.client_left, relay.read_client
        )
    else:
        outbox = Outbox(settings.vm_queue_messages, settings.vm_queue_bytes)
        vm = _new_peer(VmPeer, ws, decision.claims, outbox, relay, remote)
        await _serve_peer(vm, "vm", relay, relay.vm_joined, relay.vm_left, relay.read_vm)


async def _upgrade(
    relay: Relay, stream: trio.SocketStream, remote: str
) -> tuple[Accepted, bytes] | None:
    """The opening handshake: the accepted peer and what it sent behind its request.

    None when it was refused or went away (the stream is closed then). A
    function of its own so that the HTTP parser and the request's headers are
    freed once the connection is a WebSocket: an idle connection keeps only
    what it needs.
    """
    settings = relay.settings
    handshake = Handshake(stream)
    decision: Accepted | Refused
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()
    try:
        with trio.fail_after(settings.handshake_timeout):
            request = await handshake.read_request()
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream)
        return None
    except BadUpgrade as exc:
        request = None
        decision = Refused(exc.status, "bad_handshake", exc.message)
        extra_headers = exc.headers
    else:
        if request is None:  # the peer left before finishing its request
            await trio.aclose_forcefully(stream)
            return None
        if relay.shutting_down:
            decision = Refused(503, "shutting_down", "relayd is shutting down")
        else:
            decision = check_handshake(
                target=request.target,
                headers=request.headers,
                subprotocols=request.subprotocols,
                verifier=relay.verifier,
                allowed_origins=settings.allowed_origins,
                revoked=relay.revocations.refuses,
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
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await handshake.refuse(decision.status, decision.body(), extra_headers)
        await trio.aclose_forcefully(stream)
        return None
    try:
        pending = await handshake.accept(decision.subprotocol)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        await trio.aclose_forcefully(stream)
        return None
    return decision, pending


def _new_peer(
    cls: type[P],
    ws: WebSocket,
    claims: Claims,
    outbox: Outbox,
    relay: Relay,
    remote: str,
    **extra: Any,
) -> P:
    """A client or VM peer with the settings every peer shares (``extra``: its kind's own)."""
    settings = relay.settings
    return cls(
        ws,
        claims,
        outbox=outbox,
        timers=relay.timers,
        ping_interval=settings.ping_interval,
        close_timeout=settings.close_timeout,
        token_leeway=settings.token_leeway,
        stall_timeout=settings.stall_timeout,
        remote=remote,
        **extra,
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
    peer.on_stall = relay.peer_stalled
    peer.read_log = relay.read_log
    joined(peer)
    log.info(f"{kind} connected", extra=peer.log_extra(remote=peer.remote))

    async def guarded(p: Peer) -> None:
        try:
            await reader(p)
        except ConnectionClosed:
            raise
        except Exception:
            # The writer still runs: it sends the 1011 close frame.
            _internal_error(relay, peer.log_extra())
            peer.close(CloseCode.INTERNAL_ERROR, "internal error")

    try:
        await peer.run(guarded)
    except Exception:
        # Another of the peer's tasks (its writer) raised: no close frame can follow.
        _internal_error(relay, peer.log_extra())
        peer.close(CloseCode.INTERNAL_ERROR, "internal error")
        await peer.ws.abort()
    finally:
        left(peer)
        log.info(f"{kind} gone", extra=peer.log_extra(code=peer.close_code))


def _remote(stream: trio.SocketStream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"

"""relayd's entry point: settings, signals, systemd notify, and the serving loop.

Start: bind the WebSocket port and the control socket, then ``READY=1`` (with
``STATUS=`` naming the bound addresses, useful with port 0). SIGHUP re-reads
the JWKS file (a bad file keeps the old keys) and merges the revocation
list file (:mod:`relayd.revocations`), also read at start. SIGTERM or SIGINT: ``STOPPING=1``,
stop accepting, close every peer with 1001, and exit 0 once they are gone or
``shutdown_timeout`` has passed.
"""

from __future__ import annotations

import functools
import logging
import signal
import socket
import sys
import time
from collections.abc import Sequence

import trio

from relayd.activation import ActivationError, passed_websocket_socket
from relayd.control import serve_control
from relayd.relay import Relay
from relayd.server import handle_connection
from relayd.settings import Settings, parse_settings
from wire import sdnotify
from wire.logs import setup_logging
from wire.protocol import CloseCode
from wire.tokens import TokenVerifier

log = logging.getLogger("relayd")


def load_verifier(settings: Settings) -> TokenVerifier:
    """The token verifier for the JWKS file named in the settings."""
    return TokenVerifier.from_jwks_file(
        settings.jwks, issuer=settings.issuer, leeway=settings.token_leeway
    )


async def _listeners(
    settings: Settings, activated: socket.socket | None
) -> list[trio.SocketListener]:
    if activated is not None:
        # systemd bound the port (socket activation): --listen does not apply.
        return [trio.SocketListener(trio.socket.from_stdlib_socket(activated))]
    host, port = settings.listen_address()
    return await trio.open_tcp_listeners(port, host=host)


async def run(
    settings: Settings, verifier: TokenVerifier, activated: socket.socket | None = None
) -> None:
    """Serve until SIGTERM or SIGINT (on ``activated``, when systemd passed a socket)."""
    relay = Relay(settings, verifier)
    relay.revocations.load_file(settings.revocations_path)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        listeners = await _listeners(settings, activated)
        bound = listeners[0].socket.getsockname()
        async with trio.open_nursery() as root:
            await root.start(serve_control, relay)
            status = f"ws={bound[0]}:{bound[1]}"
            if settings.metrics_listen:
                from relayd.metrics import serve_metrics

                metrics_address: tuple[str, int] = await root.start(serve_metrics, relay)
                status += f" metrics={metrics_address[0]}:{metrics_address[1]}"
            root.start_soon(sdnotify.watchdog_loop)
            root.start_soon(relay.timers.run)
            async with trio.open_nursery() as connections:
                accepting = trio.CancelScope()

                async def accept() -> None:
                    with accepting:
                        await trio.serve_listeners(
                            functools.partial(handle_connection, relay),
                            listeners,
                            handler_nursery=connections,
                        )

                connections.start_soon(accept)
                log.info(
                    "listening",
                    extra={
                        "listen": f"{bound[0]}:{bound[1]}",
                        "socketActivation": activated is not None,
                        "controlSocket": settings.control_socket,
                        "relayId": relay.relay_id,
                    },
                )
                sdnotify.notify(f"READY=1\nSTATUS=listening {status}")
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        # systemd's notify-reload protocol: RELOADING=1, then READY=1.
                        now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
                        sdnotify.notify(f"RELOADING=1\nMONOTONIC_USEC={now_us}")
                        _reload(relay)
                        sdnotify.notify(f"READY=1\nSTATUS=listening {status}")
                        continue
                    log.info("shutting down", extra={"signal": signal.Signals(signum).name})
                    break
                sdnotify.notify("STOPPING=1")
                relay.shutting_down = True
                accepting.cancel()
                relay.close_all(CloseCode.GOING_AWAY, "relayd shutting down")
                connections.cancel_scope.deadline = trio.current_time() + settings.shutdown_timeout
            root.cancel_scope.cancel()
    log.info("stopped")


def _reload(relay: Relay) -> None:
    if relay.revocations.load_file(relay.settings.revocations_path):
        relay.revocations.close_revoked(relay.all_peers())
    try:
        verifier = load_verifier(relay.settings)
    except (OSError, ValueError) as exc:
        log.error("JWKS reload failed; keeping the old keys", extra={"error": str(exc)})
        return
    relay.verifier = verifier
    log.info("JWKS reloaded", extra={"kids": sorted(verifier.kids)})


def main(argv: Sequence[str] | None = None) -> None:
    """Console script ``relayd``."""
    settings = parse_settings(argv)
    setup_logging(settings.log_level)
    try:
        verifier = load_verifier(settings)
    except (OSError, ValueError) as exc:
        log.error("cannot read the JWKS file", extra={"jwks": settings.jwks, "error": str(exc)})
        sys.exit(2)
    try:
        activated = passed_websocket_socket()
    except (ActivationError, OSError) as exc:
        log.error("cannot use the sockets systemd passed", extra={"error": str(exc)})
        sys.exit(2)
    try:
        trio.run(run, settings, verifier, activated)
    except OSError as exc:
        log.error("cannot serve", extra={"error": str(exc)})
        sys.exit(1)

"""The systemd notify protocol, by hand (it is one datagram per message).

``READY=1`` once a service listens, ``WATCHDOG=1`` from its event loop while
``WATCHDOG_USEC`` is set, ``STOPPING=1`` when it begins to shut down. Outside
systemd (no ``NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import trio


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one notify message; True when it was sent."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError:
            return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 1_000_000 / 2, 0.05)
    except ValueError:
        return None


async def watchdog_loop(environ: Mapping[str, str] | None = None) -> None:
    """Ping the watchdog from the event loop for as long as the caller's nursery lives.

    Being scheduled at all is the liveness proof: a blocked event loop stops
    the pings and systemd restarts the service.
    """
    interval = watchdog_interval(environ)
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1", environ)
        await trio.sleep(interval)

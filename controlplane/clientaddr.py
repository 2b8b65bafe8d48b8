"""The client's address and scheme, from ``X-Forwarded-*`` only when a trusted proxy sent them.

``trusted_proxies`` (a setting) lists the addresses or networks of the
reverse proxies in front. A request whose TCP peer is not among them is
taken as it came: its ``X-Forwarded-For`` is ignored, since anyone can write
one. From a trusted peer, the client is the right-most ``X-Forwarded-For``
entry that is not itself a trusted proxy (what the nearest untrusted hop
told the first trusted one), and ``X-Forwarded-Proto`` gives the scheme.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    """``"127.0.0.1, 10.0.0.0/8"`` -> networks; raises ValueError for a bad entry."""
    nets: list[IpNetwork] = []
    for part in text.replace(" ", ",").split(","):
        if part:
            nets.append(ipaddress.ip_network(part, strict=False))
    return tuple(nets)


def is_trusted(address: str, trusted: Iterable[IpNetwork]) -> bool:
    """True when ``address`` is one of the trusted proxies."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            address.strip().strip("[]")
        )
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # an IPv4 peer on a dual-stack socket
    return any(ip.version == net.version and ip in net for net in trusted)


def client_address(peer: str, forwarded_for: Iterable[str], trusted: tuple[IpNetwork, ...]) -> str:
    """The address to count a request under (see the module docstring)."""
    if not is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


class TrustedProxies:
    """ASGI middleware: rewrites the request's client and scheme behind a trusted proxy."""

    def __init__(self, app: Any, trusted: tuple[IpNetwork, ...]) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle one ASGI connection."""
        client = scope.get("client")
        if scope.get("type") in ("http", "websocket") and client and self.trusted:
            peer = str(client[0])
            if is_trusted(peer, self.trusted):
                headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
                forwarded = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
                protos = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-proto"]
                scope = dict(scope, client=(client_address(peer, forwarded, self.trusted), 0))
                proto = protos[-1].split(",")[-1].strip().lower() if protos else ""
                if proto in ("http", "https"):
                    ws = scope["type"] == "websocket"
                    scope["scheme"] = {"http": "ws", "https": "wss"}[proto] if ws else proto
        await self.app(scope, receive, send)

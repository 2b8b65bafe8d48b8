"""Prometheus metrics and a health line, served over plain HTTP on ``--metrics-listen``.

The numbers are read from relayd's own counters when scraped (a custom
collector), so the hot path pays one integer increment, not a Prometheus
call. The HTTP side is a few lines of trio: ``GET /metrics`` (text exposition
format) and ``GET /healthz`` (``ok``); every response carries
``Content-Length`` and closes the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Final

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from relayd.relay import Relay
from relayd.settings import split_host_port

log = logging.getLogger("relayd.metrics")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_MAX_REQUEST: Final = 8192


class RelayCollector:
    """Reads a :class:`Relay`'s counters at scrape time."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def describe(self) -> list[Any]:
        """Nothing up front: metrics are produced at collect time."""
        return []

    def collect(self) -> Iterator[Any]:
        """Yield every metric family."""
        relay = self.relay
        stats = relay.stats
        connections = GaugeMetricFamily(
            "relayd_connections", "Open connections by kind", labels=["kind"]
        )
        clients = sum(len(g) for g in relay.clients_by_user.values())
        connections.add_metric(["client"], clients)
        connections.add_metric(["vm"], len(relay.vm_peers))
        connections.add_metric(["control"], len(relay.control.connections))
        yield connections
        yield GaugeMetricFamily("relayd_vms_online", "VMs that said hello", value=len(relay.vms))
        yield GaugeMetricFamily("relayd_rooms", "Workspace rooms in memory", value=len(relay.rooms))
        yield GaugeMetricFamily(
            "relayd_workspaces", "Workspaces in the ownership table", value=len(relay.ownership)
        )
        opened = CounterMetricFamily(
            "relayd_connections_opened", "Connections accepted", labels=["kind"]
        )
        opened.add_metric(["client"], stats.client_connections)
        opened.add_metric(["vm"], stats.vm_connections)
        yield opened
        refused = CounterMetricFamily(
            "relayd_handshakes_refused", "Handshakes refused, by reason", labels=["reason"]
        )
        for reason, count in sorted(stats.refused_reasons.items()):
            refused.add_metric([reason], count)
        yield refused
        yield CounterMetricFamily(
            "relayd_slow_client_closes", "Clients closed with 4008", value=stats.slow_closes
        )
        yield CounterMetricFamily(
            "relayd_rate_limited",
            "Client messages refused as rate_limited",
            value=stats.rate_limited,
        )
        yield CounterMetricFamily(
            "relayd_snapshot_requests", "snapshot_request sent", value=stats.snapshot_requests
        )
        yield CounterMetricFamily(
            "relayd_snapshots", "messages_snapshot received", value=stats.snapshots
        )
        yield CounterMetricFamily(
            "relayd_audit_overflow", "Audit events lost", value=stats.audit_overflow
        )
        yield CounterMetricFamily(
            "relayd_internal_errors",
            "Connections closed with 1011: handling them raised (logged with a traceback)",
            value=stats.internal_errors,
        )
        drops = CounterMetricFamily(
            "relayd_vm_frames_dropped", "VM frames dropped, by reason", labels=["reason"]
        )
        for reason, count in sorted(stats.vm_drops.items()):
            drops.add_metric([reason], count)
        yield drops
        yield CounterMetricFamily(
            "relayd_replays", "Subscribes answered from the replay buffer", value=stats.replays
        )
        yield CounterMetricFamily(
            "relayd_subscribes", "Subscribes accepted", value=stats.subscribes
        )
        latency = HistogramMetricFamily(
            "relayd_snapshot_latency_seconds",
            "From snapshot_request to its messages_snapshot",
            buckets=stats.snapshot_latency.cumulative(),
            sum_value=stats.snapshot_latency.total,
        )
        yield latency
        for name, help_text, table in (
            ("relayd_messages_in", "Frames received, by peer kind and type", stats.in_count),
            ("relayd_bytes_in", "Characters received, by peer kind and type", stats.in_chars),
            ("relayd_messages_out", "Frames sent, by peer kind and type", stats.out_count),
            ("relayd_bytes_out", "Characters sent, by peer kind and type", stats.out_chars),
        ):
            family = CounterMetricFamily(name, help_text, labels=["kind", "type"])
            for key, value in sorted(table.items()):
                kind, _, kind_type = key.partition(":")
                family.add_metric([kind, kind_type], value)
            yield family
        client_queues = [len(p.outbox) for g in relay.clients_by_user.values() for p in g]
        vm_queues = [len(p.outbox) for p in relay.vm_peers]
        depth = GaugeMetricFamily(
            "relayd_queue_depth_max", "Longest outgoing queue, by peer kind", labels=["kind"]
        )
        depth.add_metric(["client"], max(client_queues, default=0))
        depth.add_metric(["vm"], max(vm_queues, default=0))
        yield depth
        queued = GaugeMetricFamily(
            "relayd_queued_frames", "Frames in outgoing queues, by peer kind", labels=["kind"]
        )
        queued.add_metric(["client"], sum(client_queues))
        queued.add_metric(["vm"], sum(vm_queues))
        yield queued
        yield GaugeMetricFamily(
            "relayd_audit_buffered",
            "Audit events waiting for a control plane",
            value=relay.control.buffered_audit,
        )


def make_registry(relay: Relay) -> CollectorRegistry:
    """A registry with relayd's collector only (no process-global state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(relay))
    return registry


async def serve_metrics(
    relay: Relay, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``/metrics`` and ``/healthz`` until cancelled; reports the bound address."""
    host, port = split_host_port(relay.settings.metrics_listen)
    registry = make_registry(relay)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()

    async def handle(stream: trio.SocketStream) -> None:
        with trio.move_on_after(10):
            await _answer(stream, relay, registry)
        await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started((bound[0], bound[1]))


async def _answer(stream: trio.SocketStream, relay: Relay, registry: CollectorRegistry) -> None:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return
        data += chunk
        if len(data) > _MAX_REQUEST:
            await _respond(stream, 431, "text/plain", b"request too large\n")
            return
    request_line = data.split(b"\n", 1)[0].decode("latin-1").strip()
    parts = request_line.split()
    if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
        await _respond(stream, 405, "text/plain", b"only GET\n")
        return
    path = parts[1].split("?", 1)[0]
    if path == "/metrics":
        await _respond(stream, 200, CONTENT_TYPE, generate_latest(registry))
    elif path == "/healthz":
        body = "ok" if not relay.shutting_down else "shutting down"
        await _respond(stream, 200 if not relay.shutting_down else 503, "text/plain", body.encode())
    else:
        await _respond(stream, 404, "text/plain", b"not found\n")


async def _respond(stream: trio.SocketStream, status: int, content_type: str, body: bytes) -> None:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 431: "Too Large"}.get(
        status, "Service Unavailable"
    )
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        await stream.send_all(head + body)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        log.debug("metrics client went away")

"""Prometheus metrics and a health line, served over plain HTTP on ``--metrics-listen``.

The numbers are read from relayd's own counters when scraped (a custom
collector), so the hot path pays one integer increment, not a Prometheus
call. The HTTP side is read and written with h11, like the WebSocket
handshake: ``GET /metrics`` (text exposition format) and ``GET /healthz``
(``ok``), ``HEAD`` of either; every response carries ``Content-Length`` and
closes the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Final

import attrs
import h11
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from relayd.httpanswer import reason_phrase, response_bytes
from relayd.relay import Relay
from relayd.settings import split_host_port
from relayd.wsupgrade import MAX_REQUEST_BYTES

log = logging.getLogger("relayd.metrics")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_TEXT: Final = b"text/plain; charset=utf-8"
#: Bytes read from a scraper's socket at a time.
_READ_SIZE: Final = 4096
#: Longest a scraper's connection lives, request to close (seconds).
_ANSWER_TIMEOUT: Final = 10.0
#: How long what a scraper sends after its answer is read and dropped (seconds).
_LINGER: Final = 1.0


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
        yield GaugeMetricFamily(
            "relayd_rooms", "Session rooms in memory", value=relay.router.room_count()
        )
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
        for why, count in sorted(stats.refused_reasons.items()):
            refused.add_metric([why], count)
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
            "relayd_requests", "request forwarded to a VM", value=stats.requests
        )
        yield CounterMetricFamily(
            "relayd_replies", "reply delivered to its connection", value=stats.replies
        )
        yield CounterMetricFamily(
            "relayd_stale_replies",
            "reply dropped: no connection waits for it",
            value=stats.stale_replies,
        )
        yield CounterMetricFamily(
            "relayd_request_timeouts",
            "request ended by relayd: the VM did not answer within --request-timeout",
            value=stats.request_timeouts,
        )
        yield CounterMetricFamily(
            "relayd_terminal_frames",
            "terminal_output/terminal_exit delivered to the connection that opened the terminal",
            value=stats.terminal_frames,
        )
        yield CounterMetricFamily(
            "relayd_stale_terminal_frames",
            "terminal frame dropped: no open terminal of that connection and VM",
            value=stats.stale_terminal_frames,
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
        yield CounterMetricFamily(
            "relayd_readers_fell_behind",
            "Readers whose place fell out of the log (a fresh snapshot in-band)",
            value=stats.fell_behind,
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
        with trio.move_on_after(_ANSWER_TIMEOUT):
            await _answer(stream, relay, registry)
            await _linger(stream)
        await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started((bound[0], bound[1]))


@attrs.frozen
class Answer:
    """What the metrics endpoint answers to one request."""

    status: int
    content_type: bytes
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


def route(
    method: bytes, target: bytes, *, shutting_down: bool, metrics: Callable[[], bytes]
) -> Answer:
    """The answer to ``method target``: pure, so every case is tested without a socket."""
    if method not in (b"GET", b"HEAD"):
        return Answer(405, _TEXT, b"only GET and HEAD\n", ((b"Allow", b"GET, HEAD"),))
    path = target.split(b"?", 1)[0]
    if path == b"/metrics":
        return Answer(200, CONTENT_TYPE.encode(), metrics())
    if path == b"/healthz":
        if shutting_down:
            return Answer(503, _TEXT, b"shutting down")
        return Answer(200, _TEXT, b"ok")
    return Answer(404, _TEXT, b"not found\n")


async def _linger(stream: trio.SocketStream) -> None:
    """Half-close, then drop what the client still sends, for at most :data:`_LINGER` seconds.

    Closing with unread input makes the kernel reset the connection, which can
    throw away the answer before the client reads it (RFC 9112 section 9.6).
    """
    with trio.move_on_after(_LINGER):
        try:
            await stream.send_eof()
            while await stream.receive_some(_READ_SIZE):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _answer(stream: trio.SocketStream, relay: Relay, registry: CollectorRegistry) -> None:
    http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    head_only = False
    try:
        while True:
            event = http.next_event()
            if isinstance(event, h11.Request):
                break
            if event is not h11.NEED_DATA:
                return  # the peer closed, or sent something else first
            data = await stream.receive_some(_READ_SIZE)
            if not data:
                return
            http.receive_data(bytes(data))
    except h11.RemoteProtocolError as exc:  # not HTTP (400), or a head too long (431)
        answer = Answer(exc.error_status_hint, _TEXT, reason_phrase(exc.error_status_hint) + b"\n")
    else:
        head_only = event.method == b"HEAD"
        answer = route(
            event.method,
            event.target,
            shutting_down=relay.shutting_down,
            metrics=lambda: generate_latest(registry),
        )
    data = response_bytes(
        http,
        answer.status,
        answer.content_type,
        answer.body,
        headers=answer.headers,
        head_only=head_only,
    )
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        log.debug("metrics client went away")

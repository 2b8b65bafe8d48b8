"""Prometheus metrics of the control plane, in a registry of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from controlplane import store

if TYPE_CHECKING:
    from controlplane.coordinator import Coordinator
    from controlplane.db import Database
    from controlplane.relaylink import RelayLink


class Metrics:
    """Counters updated as requests come; gauges filled from the database on scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "controlplane_http_requests",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.login_failures = Counter(
            "controlplane_login_failures",
            "Failed logins (wrong user name or password).",
            registry=self.registry,
        )
        self.workspaces = Gauge(
            "controlplane_workspaces",
            "Workspaces that are not deleted, by status.",
            ["status"],
            registry=self.registry,
        )
        self.vms_online = Gauge(
            "controlplane_vms_online", "VMs relayd reports online.", registry=self.registry
        )
        self.relay_connected = Gauge(
            "controlplane_relay_connected",
            "1 while the control link to relayd is up.",
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int) -> None:
        """Count one answered request (by route pattern, never by raw path)."""
        self.requests.labels(method, route, str(status)).inc()

    async def render(
        self, db: Database, coordinator: Coordinator, link: RelayLink | None
    ) -> tuple[bytes, str]:
        """The exposition text, with gauges brought up to date."""
        counts = await db.run(store.count_workspaces_by_status)
        self.workspaces.clear()
        for status, count in counts.items():
            self.workspaces.labels(status).set(count)
        self.vms_online.set(len(coordinator.online_vms))
        self.relay_connected.set(1 if link is not None and link.connected else 0)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

"""What the control plane's handlers share: one :class:`Services`, built by ``serve`` or a test.

Its own module so that the parts of the app (auth, metrics, the routes) can
take it without importing :mod:`controlplane.app`, which imports them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
import httpx
import trio

from controlplane.changes import ChangeListener
from controlplane.coordinator import Coordinator
from controlplane.db import Database
from controlplane.keys import KeyRing
from controlplane.metrics import Metrics
from controlplane.relaylink import RelayLink
from controlplane.settings import Settings


@attrs.define
class Services:
    """What the handlers use; built once by ``serve`` (or a test)."""

    settings: Settings
    db: Database
    keyring: KeyRing
    coordinator: Coordinator
    link: RelayLink | None = None
    metrics: Metrics | None = None
    github_transport: httpx.AsyncBaseTransport | None = None
    clock: Callable[[], float] = time.time
    hash_limiter: trio.CapacityLimiter | None = None
    #: Other nodes' changes from PostgreSQL (``serve``; None in tests that build their own).
    changes: ChangeListener | None = None

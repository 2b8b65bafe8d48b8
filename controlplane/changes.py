"""Other nodes' changes, as PostgreSQL tells them: ``LISTEN ffcloud_changes``.

Migration 0005 makes PostgreSQL send ``NOTIFY ffcloud_changes`` (payload: the
table's name) whenever a statement changes what a relayd must know:
placements and releases, VMs (their node, on- or offline, revoked), logins
ended, passwords changed, users removed. This listener holds one connection
of its own with ``LISTEN`` on it and calls ``on_change`` for every batch of
notifications (the coordinator's ``kick``: its next pass reads the database
and tells relayd what differs). SQLite has one node and nothing to hear.

The connection is waited on with trio (its socket), never in a thread; when
it breaks (PostgreSQL restarted, the network), the listener reconnects with
backoff and calls ``on_change`` once connected again, since notifications
sent meanwhile are lost. The reconciler's interval stays the safety net.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import sqlalchemy as sa
import trio

log = logging.getLogger(__name__)

#: The channel migration 0005's triggers notify.
CHANNEL: Final = "ffcloud_changes"
#: First wait before reconnecting; doubles up to ``backoff_max``.
BACKOFF_START: Final = 0.1
#: libpq's TCP keepalives (idle, interval, count): a server that vanished
#: without a word is noticed within about idle + interval * count seconds.
KEEPALIVE: Final = (10, 5, 3)
#: Seconds a connection attempt may take.
CONNECT_TIMEOUT: Final = 5


def libpq_url(url: str) -> str | None:
    """The libpq URL of a SQLAlchemy PostgreSQL URL; None for any other database."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class ChangeListener:
    """Calls ``on_change`` whenever another process changed what relayd must know."""

    def __init__(
        self, database_url: str, on_change: Callable[[], None], *, backoff_max: float = 10.0
    ) -> None:
        self._dsn = libpq_url(database_url)
        self._on_change = on_change
        self.backoff_max = backoff_max
        #: Notifications received, and connections made (for tests and logs).
        self.received = 0
        self.connects = 0
        self.last_error = "not connected yet"
        self._connected = trio.Event()

    @property
    def enabled(self) -> bool:
        """True on PostgreSQL (the only database several nodes share)."""
        return self._dsn is not None

    async def wait_connected(self, count: int = 1) -> None:
        """Return once ``LISTEN`` has been set up ``count`` times."""
        while self.connects < count:
            await self._connected.wait()

    async def run(self) -> None:
        """Listen, reconnect with backoff; forever (until cancelled). Nothing on SQLite."""
        if self._dsn is None:
            return
        backoff = BACKOFF_START
        while True:
            before = self.connects
            try:
                await self._listen(self._dsn)
            except Exception as exc:  # psycopg.Error and OSError: both mean "reconnect"
                self.last_error = f"{type(exc).__name__}: {exc}".strip()
                log.warning("database change listener down", extra={"reason": self.last_error})
            if self.connects > before:
                backoff = BACKOFF_START  # it was up: the first retry comes soon
            await trio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max)

    async def _listen(self, dsn: str) -> None:
        import psycopg  # the postgres extra; only reached on PostgreSQL

        def connect() -> Any:
            idle, interval, count = KEEPALIVE
            conn = psycopg.connect(
                dsn,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
                keepalives=1,
                keepalives_idle=idle,
                keepalives_interval=interval,
                keepalives_count=count,
            )
            conn.execute(f"LISTEN {CHANNEL}")
            return conn

        conn = await trio.to_thread.run_sync(connect)
        try:
            self.connects += 1
            self._connected.set()
            self._connected = trio.Event()
            log.info("listening for database changes", extra={"channel": CHANNEL})
            # Whatever changed while there was no LISTEN was not heard: look now.
            self._on_change()
            pgconn = conn.pgconn
            while True:
                await trio.lowlevel.wait_readable(pgconn.socket)
                pgconn.consume_input()  # raises psycopg.OperationalError when the server went
                batch = 0
                while pgconn.notifies() is not None:
                    batch += 1
                if batch:
                    self.received += batch
                    self._on_change()
                elif pgconn.status != psycopg.pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the connection to the database broke")
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(conn.close)

"""``controlplane serve``: the HTTP API, the relayd link, the reconciler and the
provisioner, all in one nursery (hypercorn's trio worker runs inside it).

Start-up order: state dir, keys (``STATE_DIR/jwks.json`` is written before
anything listens, so relayd can start from it), database migrations, then the
tasks; ``READY=1`` once the HTTP port is bound. SIGTERM/SIGINT: ``STOPPING=1``,
hypercorn finishes the requests in flight, everything else is cancelled.
SIGHUP re-reads the keys (after ``controlplane keys rotate``).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from controlplane import nodes
from controlplane.app import create_app
from controlplane.changes import ChangeListener
from controlplane.coordinator import Coordinator
from controlplane.db import Database
from controlplane.keys import KeyRing
from controlplane.metrics import Metrics
from controlplane.provisioner import LocalProvisioner, NoProvisioner, Provisioner
from controlplane.purge import Purger
from controlplane.relaylink import RelayLink
from controlplane.services import Services
from controlplane.settings import Settings
from controlplane.statedir import secure_dir
from wire import sdnotify

log = logging.getLogger("controlplane")

#: Seconds hypercorn gives requests in flight when shutting down.
GRACEFUL_TIMEOUT = 5.0


@attrs.define
class Running:
    """A started control plane: where it listens, its parts, and how to stop it."""

    url: str
    services: Services
    provisioner: Provisioner
    _stop: trio.Event

    def stop(self) -> None:
        """Begin a graceful shutdown."""
        self._stop.set()


def prepare_state(settings: Settings) -> tuple[KeyRing, Database]:
    """State dir (0700), keys and JWKS, database with migrations, this node recorded (blocking)."""
    secure_dir(settings.state_dir)
    keyring = KeyRing(settings.state_dir)
    keyring.load()
    db = Database.open(settings.database_url)
    db.run_sync(lambda c: nodes.register(c, settings.node_id, settings.relay_url))
    return keyring, db


def make_provisioner(
    settings: Settings, services: Services, env: Mapping[str, str] | None = None
) -> Provisioner:
    """The provisioner the settings name."""
    if settings.provisioner == "none":
        return NoProvisioner()
    return LocalProvisioner(
        services.db,
        vms_dir=settings.local_vms_dir,
        count=settings.local_vms,
        relay_url=settings.relay_url,
        engine=settings.local_engine,
        signing_key=lambda: services.keyring.signing_key,
        issuer=settings.issuer,
        token_ttl=settings.local_vm_token_ttl,
        command=settings.vmagent_command,
        git_base_url=settings.local_git_base_url,
        no_clone=settings.local_no_clone,
        env=env,
    )


def hypercorn_config(settings: Settings) -> Config:
    """Hypercorn, bound to ``listen``, logging through our JSON logger."""
    config = Config()
    config.bind = [settings.listen]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.include_server_header = False
    return config


async def serve(
    settings: Settings,
    *,
    handle_signals: bool = False,
    env: Mapping[str, str] | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the control plane until cancelled (or a signal, with ``handle_signals``)."""
    keyring, db = await trio.to_thread.run_sync(prepare_state, settings)
    try:
        coordinator = Coordinator(
            db,
            interval=settings.reconcile_interval,
            # A password change cuts off tokens issued before it, which live this long.
            session_window=settings.access_token_ttl,
            revocations_file_dir=settings.state_dir,
            node_id=settings.node_id,
            vm_lost_after=settings.vm_lost_after,
        )
        changes = ChangeListener(
            settings.database_url, coordinator.kick, backoff_max=settings.relay_backoff_max
        )
        link = RelayLink(
            settings.relay_socket_path,
            on_event=coordinator.on_event,
            on_connect=coordinator.on_connect,
            backoff_max=settings.relay_backoff_max,
            request_timeout=settings.relay_request_timeout,
        )
        coordinator.attach(link)
        services = Services(
            settings=settings,
            db=db,
            keyring=keyring,
            coordinator=coordinator,
            link=link,
            metrics=Metrics(),
            changes=changes,
        )
        provisioner = make_provisioner(settings, services, env)
        purger = Purger(
            db,
            interval=settings.purge_interval,
            purge_after=settings.purge_after,
            access_token_ttl=settings.access_token_ttl,
            login_window=settings.login_failure_window,
            batch=settings.purge_batch,
            clock=services.clock,
        )
        app: Any = create_app(services)
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.run)
            nursery.start_soon(coordinator.run)
            nursery.start_soon(changes.run)
            nursery.start_soon(purger.run)

            async def http(task_status: trio.TaskStatus[list[str]]) -> None:
                await hypercorn_serve(
                    app,
                    hypercorn_config(settings),
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )
                # hypercorn has finished the requests in flight: stop the rest.
                nursery.cancel_scope.cancel()

            binds: list[str] = await nursery.start(http)
            await nursery.start(provisioner.run)
            if handle_signals:
                await nursery.start(_signals, keyring, stop)
            nursery.start_soon(sdnotify.watchdog_loop)
            url = binds[0]
            log.info(
                "listening", extra={"url": url, "relaySocket": str(settings.relay_socket_path)}
            )
            sdnotify.notify(f"READY=1\nSTATUS=listening {url}")
            task_status.started(Running(url, services, provisioner, stop))
    finally:
        db.close()


async def _signals(
    keyring: KeyRing,
    stop: trio.Event,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:
                try:
                    await trio.to_thread.run_sync(keyring.load)
                except (OSError, ValueError) as exc:
                    log.error("key reload failed; keeping the old keys", extra={"error": str(exc)})
                else:
                    log.info("keys reloaded", extra={"kids": sorted(keyring.public_keys())})
                continue
            log.info("shutting down", extra={"signal": signal.Signals(signum).name})
            sdnotify.notify("STOPPING=1")
            stop.set()
            return

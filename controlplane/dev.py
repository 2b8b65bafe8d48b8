"""``controlplane dev``: the whole system on one machine, under one supervisor.

One nursery holds the control plane (in this process; its local provisioner
runs a vmagent), and relayd (a child process, restarted if it dies). The
children get their own process group, so Ctrl-C reaches only this supervisor, which
then stops them in order: cancelling ``trio.run_process`` sends SIGTERM and
waits. A login is created (``FFCLOUD_DEV_USER``/``FFCLOUD_DEV_PASSWORD``, or
``dev`` with a generated password) and printed with the URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
from collections.abc import Mapping
from functools import partial
from typing import Final

import attrs
import trio

from controlplane import store
from controlplane.passwords import hash_password
from controlplane.provisioner import default_command
from controlplane.server import Running, prepare_state, serve
from controlplane.settings import DEFAULT_RELAY_URL, Settings

log = logging.getLogger("controlplane.dev")

DEFAULT_DEV_USER: Final = "dev"
DEFAULT_RELAY_LISTEN: Final = "127.0.0.1:8765"
#: relayd exiting this soon after starting, this many times in a row, ends the session.
QUICK_EXIT: Final = 2.0
QUICK_EXITS_ALLOWED: Final = 5
#: Longest wait between attempts to reach relayd's control socket in dev.
DEV_RELAY_BACKOFF_MAX: Final = 0.5
#: Seconds the banner waits for the relayd link before printing anyway.
READY_WAIT: Final = 60.0
#: Seconds between checks that relayd accepts connections, before the local VMs start.
LISTEN_POLL: Final = 0.05


class DevFailed(Exception):
    """A part of the stack cannot run; the message says which and why."""


def ensure_login(settings: Settings, env: Mapping[str, str]) -> tuple[str, str]:
    """Create (or reset) the dev login; returns user name and password."""
    username = env.get("FFCLOUD_DEV_USER") or DEFAULT_DEV_USER
    password = env.get("FFCLOUD_DEV_PASSWORD") or secrets.token_urlsafe(12)
    hashed = hash_password(password)
    _keyring, db = prepare_state(settings)
    try:
        if not db.run_sync(lambda c: store.set_password(c, username, hashed)):
            db.run_sync(lambda c: store.add_user(c, username, hashed))
    finally:
        db.close()
    return username, password


def http_origins(url: str) -> list[str]:
    """The browser origins of the UI at ``url`` (127.0.0.1 and localhost alike)."""
    origins = [url]
    if "://127.0.0.1:" in url:
        origins.append(url.replace("://127.0.0.1:", "://localhost:"))
    elif "://localhost:" in url:
        origins.append(url.replace("://localhost:", "://127.0.0.1:"))
    return origins


async def supervise_relayd(argv: list[str], env: Mapping[str, str], stopping: trio.Event) -> None:
    """Run relayd; start it again when it dies, unless it keeps dying at once."""
    quick_exits = 0
    while True:
        started = trio.current_time()
        result = await trio.run_process(argv, check=False, env=dict(env), process_group=0)
        if stopping.is_set():
            return
        quick_exits = quick_exits + 1 if trio.current_time() - started < QUICK_EXIT else 0
        if quick_exits >= QUICK_EXITS_ALLOWED:
            raise DevFailed(f"relayd keeps exiting (code {result.returncode}); see its log above")
        log.warning("relayd exited; restarting", extra={"returncode": result.returncode})
        await trio.sleep(0.5 * quick_exits)


async def wait_listening(address: str) -> None:
    """Return once ``HOST:PORT`` accepts a TCP connection.

    The local vmagents dial relayd as soon as they start: started before it
    listens, each logs a failed handshake and waits out a backoff."""
    host, _, port = address.rpartition(":")
    while True:
        try:
            stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
        except OSError:
            await trio.sleep(LISTEN_POLL)
        else:
            await stream.aclose()
            return


async def dev(args: argparse.Namespace, settings: Settings, env: Mapping[str, str]) -> None:
    """Run everything until SIGINT/SIGTERM."""
    relay_listen = args.relay_listen or env.get("CONTROLPLANE_RELAY_LISTEN") or DEFAULT_RELAY_LISTEN
    if settings.relay_url == DEFAULT_RELAY_URL:
        settings = attrs.evolve(settings, relay_url=f"ws://{relay_listen}")
    if not (args.local_engine or env.get("CONTROLPLANE_LOCAL_ENGINE")):
        engine = "claude" if env.get("ANTHROPIC_API_KEY") else "demo"
        settings = attrs.evolve(settings, local_engine=engine)
    if not (args.relay_backoff_max or env.get("CONTROLPLANE_RELAY_BACKOFF_MAX")):
        # relayd starts beside us: retry the control socket often until it is there.
        settings = attrs.evolve(settings, relay_backoff_max=DEV_RELAY_BACKOFF_MAX)
    # Keys and JWKS first (in ensure_login): relayd starts from them.
    username, password = await trio.to_thread.run_sync(ensure_login, settings, env)
    relay_metrics = args.relay_metrics_listen or env.get("CONTROLPLANE_RELAY_METRICS_LISTEN", "")
    argv = [
        args.relayd_command or default_command("relayd"),
        "--listen",
        relay_listen,
        "--control-socket",
        str(settings.relay_socket_path),
        "--jwks",
        str(settings.jwks_path),
        "--issuer",
        settings.issuer,
        "--metrics-listen",
        relay_metrics,
        "--log-level",
        settings.log_level,
    ]
    for origin in http_origins(f"http://{settings.listen}"):
        argv += ["--allowed-origin", origin]
    stopping = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                # Ctrl-C at any moment, even while starting, stops everything.
                async for signum in signals:
                    log.info("stopping", extra={"signal": signal.Signals(signum).name})
                    stopping.set()
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            # relayd first: the control plane's local provisioner starts vmagents
            # that dial it at once (its link to relayd waits on its own).
            nursery.start_soon(supervise_relayd, argv, env, stopping)
            with trio.move_on_after(READY_WAIT) as listening:
                await wait_listening(relay_listen)
            if listening.cancelled_caught:
                log.warning("relayd does not accept connections yet", extra={"at": relay_listen})
            running: Running = await nursery.start(partial(serve, settings, env=env))
            link = running.services.link
            assert link is not None
            with trio.move_on_after(READY_WAIT) as waiting:
                await link.wait_connected()
            if waiting.cancelled_caught:
                log.warning("relayd is not reachable yet", extra={"reason": link.last_error})
            print(
                f"\nFF Cloud is running at {running.url}\n"
                f"  log in as {username} with password {password}\n"
                f"  relay {settings.relay_url} · engine {settings.local_engine}"
                f" · state {settings.state_dir}\n"
                "Press Ctrl-C to stop.\n",
                flush=True,
            )
    print("FF Cloud stopped.", flush=True)


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The plain exceptions inside (nested) exception groups."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def run_dev(args: argparse.Namespace, settings: Settings) -> int:
    """``controlplane dev``; the exit status."""
    env = dict(os.environ)
    if not (args.log_level or env.get("CONTROLPLANE_LOG_LEVEL")):
        # Quiet by default so the URL and the login stand out; --log-level info for more.
        settings = attrs.evolve(settings, log_level="warning")
        logging.getLogger().setLevel("WARNING")
        env.setdefault("VMAGENT_LOG_LEVEL", "warning")
    status = 0
    try:
        trio.run(dev, args, settings, env)
    except* (DevFailed, OSError) as group:
        for exc in leaves(group):
            print(f"controlplane dev: {exc}", file=sys.stderr)
        status = 1
    return status

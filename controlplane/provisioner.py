"""Where VMs come from.

- ``none``: VMs registered with ``controlplane vm add`` dial in by themselves.
- ``local``: vmagent processes on this machine, one per local VM, each with
  its own state dir and a freshly issued VM token in a 0600 file; one that
  dies is started again after a backoff. Least privilege, as far as one user
  allows: their directories are outside the control plane's state directory
  (``--local-vm-dir``, never beside the keys and the database), and their
  environment is built from an allow-list (:mod:`wire.childenv`), so neither
  vmagent nor its Claude CLI sees the control plane's secrets.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Final, Protocol

import sqlalchemy as sa
import trio

from controlplane import store
from controlplane.db import Database
from controlplane.keys import write_private_file
from controlplane.statedir import secure_dir
from wire.childenv import vmagent_env
from wire.protocol import Scope
from wire.tokens import SigningKey, issue_token

log = logging.getLogger(__name__)

#: First wait before restarting a vmagent that exited; doubles up to the maximum.
RESTART_BACKOFF_START: Final = 0.5
RESTART_BACKOFF_MAX: Final = 30.0
#: A vmagent that ran this long before dying gets the short backoff again.
HEALTHY_RUN: Final = 60.0


class Provisioner(Protocol):
    """Makes VMs exist; runs for as long as the control plane does."""

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start what it provides, and keep it running until cancelled."""


class NoProvisioner:
    """VMs come by themselves: nothing to run."""

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Return at once (nothing to supervise)."""
        task_status.started()


def default_command(name: str) -> str:
    """A console script next to this Python (the venv's), else on the PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name) or name


class LocalProvisioner:
    """Starts and supervises ``count`` vmagent processes on this machine."""

    def __init__(
        self,
        db: Database,
        *,
        vms_dir: Path,
        count: int,
        relay_url: str,
        engine: str,
        signing_key: Callable[[], SigningKey],
        issuer: str,
        token_ttl: float,
        command: str = "vmagent",
        git_base_url: str | None = None,
        no_clone: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.db = db
        self.dir = vms_dir
        self.count = count
        self.relay_url = relay_url
        self.engine = engine
        self.signing_key = signing_key
        self.issuer = issuer
        self.token_ttl = token_ttl
        self.command = command
        self.git_base_url = git_base_url
        self.no_clone = no_clone
        self.env = vmagent_env(os.environ if env is None else env)
        #: How many tokens were written per VM (for tests and logs).
        self.tokens_written: dict[str, int] = {}
        #: How many times each VM's process was started (for tests and logs).
        self.starts: dict[str, int] = {}
        #: The running vmagent of each local VM, and an event set once it runs.
        self.processes: dict[str, trio.Process] = {}
        self.running: dict[str, trio.Event] = defaultdict(trio.Event)

    async def ensure_vms(self) -> list[store.Vm]:
        """The local VMs ``local-1`` .. ``local-N``, registered when missing."""

        def work(conn: sa.Connection) -> list[store.Vm]:
            found = []
            for i in range(1, self.count + 1):
                name = f"local-{i}"
                vm = store.find_vm(conn, name) or store.add_vm(conn, name, "local")
                found.append(vm)
            return found

        return await self.db.run(work)

    def argv(self, vm: store.Vm) -> list[str]:
        """The vmagent command line for ``vm``."""
        home = self.dir / vm.name
        argv = [
            default_command(self.command) if self.command == "vmagent" else self.command,
            "--relay-url",
            self.relay_url,
            "--token-file",
            str(home / "token"),
            "--state-dir",
            str(home / "state"),
            "--engine",
            self.engine,
        ]
        if self.git_base_url:
            argv += ["--git-base-url", self.git_base_url]
        if self.no_clone:
            argv.append("--no-clone")
        return argv

    def write_token(self, vm: store.Vm) -> Path:
        """Issue a fresh VM token into the VM's token file (0600)."""
        home = self.dir / vm.name
        secure_dir(self.dir)
        (home / "state").mkdir(parents=True, exist_ok=True, mode=0o700)
        token = issue_token(
            self.signing_key(),
            sub=vm.id,
            scope=Scope.VM,
            issuer=self.issuer,
            ttl_seconds=self.token_ttl,
        )
        path = home / "token"
        write_private_file(path, token.encode())
        self.tokens_written[vm.name] = self.tokens_written.get(vm.name, 0) + 1
        return path

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every local VM's vmagent and restart those that exit."""
        vms = [vm for vm in await self.ensure_vms() if not vm.revoked]
        async with trio.open_nursery() as nursery:
            for vm in vms:
                nursery.start_soon(self._supervise, vm)
            task_status.started()

    async def _supervise(self, vm: store.Vm) -> None:
        backoff = RESTART_BACKOFF_START
        while True:
            current = await self.db.run(lambda c: store.get_vm(c, vm.id))
            if current is None or current.revoked:
                log.info("local VM revoked; not starting it", extra={"vm": vm.name})
                return
            self.write_token(vm)
            self.starts[vm.name] = self.starts.get(vm.name, 0) + 1
            started = trio.current_time()
            log.info("starting vmagent", extra={"vm": vm.name, "vmId": vm.id})
            # Its own process group (same session): a Ctrl-C in the terminal
            # reaches the supervisor only, which stops the vmagent in order
            # (cancellation sends SIGTERM).
            try:
                async with trio.open_nursery() as nursery:
                    process: trio.Process = await nursery.start(
                        partial(
                            trio.run_process,
                            self.argv(vm),
                            check=False,
                            env=self.env,
                            process_group=0,
                        )
                    )
                    self.processes[vm.name] = process
                    self.running[vm.name].set()
                    nursery.start_soon(self._renew_token, vm)
                    await process.wait()
                    nursery.cancel_scope.cancel()
            except OSError as exc:
                log.error("cannot start vmagent", extra={"vm": vm.name, "error": str(exc)})
            else:
                log.warning(
                    "vmagent exited; restarting",
                    extra={"vm": vm.name, "returncode": process.returncode},
                )
            finally:
                self.processes.pop(vm.name, None)
                self.running[vm.name] = trio.Event()
            ran = trio.current_time() - started
            if ran > HEALTHY_RUN:
                backoff = RESTART_BACKOFF_START
            await trio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX)

    async def _renew_token(self, vm: store.Vm) -> None:
        """Rewrite the token file at half its lifetime; vmagent sends the new one as ``auth``."""
        while True:
            await trio.sleep(self.token_ttl / 2)
            self.write_token(vm)
            log.info("VM token renewed", extra={"vm": vm.name})

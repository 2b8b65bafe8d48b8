"""A throwaway PostgreSQL cluster for the tests, started and removed by them.

``initdb`` into a fresh temporary directory, ``pg_ctl`` on a free loopback
port, the Unix socket inside that directory, password authentication with a
random password; everything is stopped and deleted at the end of the session.
PostgreSQL refuses to run as root, so under root the server runs as
``nobody``, which owns the temporary directory.

The binaries are looked up in ``FFCLOUD_TEST_POSTGRES_BIN``, then Debian's
``/usr/lib/postgresql/<version>/bin`` (the newest), then the ``PATH``.
``scripts/system-deps`` installs them; where they are missing, the tests that
need PostgreSQL are skipped with the reason, which ``pytest -ra`` prints.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs
import pytest

#: Seconds ``pg_ctl`` waits for the server to start or stop.
START_TIMEOUT: Final = 60
#: The OS user the server runs as when the tests run as root.
UNPRIVILEGED_USER: Final = "nobody"
#: The database role the tests connect as (created by ``initdb``).
ROLE: Final = "ffcloud"
#: Durability is pointless in a cluster removed after the run; speed is not.
SERVER_OPTIONS: Final = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",
)


def find_bindir() -> Path | None:
    """The directory that holds ``initdb`` and ``pg_ctl``, or None."""
    named = os.environ.get("FFCLOUD_TEST_POSTGRES_BIN")
    if named:
        return Path(named) if (Path(named) / "initdb").exists() else None
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.define
class PostgresCluster:
    """One running throwaway cluster; :meth:`database` hands out empty databases."""

    bindir: Path
    root: Path
    port: int
    password: str
    _names: Iterator[int] = attrs.field(factory=itertools.count)

    @property
    def datadir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        """Where the server's Unix socket lives (inside the temporary directory)."""
        return self.root / "socket"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` over loopback TCP."""
        return f"postgresql+psycopg://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t{next(self._names)}"
        dsn = (
            f"host=127.0.0.1 port={self.port} user={ROLE} password={self.password} dbname=postgres"
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = [
                "setpriv",
                f"--reuid={UNPRIVILEGED_USER}",
                "--regid=nogroup",
                "--clear-groups",
                *command,
            ]
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=START_TIMEOUT + 10
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()}\n{tail}")

    def init(self) -> None:
        """``initdb`` the data directory (the role and its password come with it)."""
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        self._run(
            "initdb",
            "--pgdata",
            str(self.datadir),
            "--username",
            ROLE,
            "--pwfile",
            str(pwfile),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        pwfile.unlink()

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c port={self.port}",
            f"-c unix_socket_directories={self.socket_dir}",
            *(f"-c {option}" for option in SERVER_OPTIONS),
        ]
        self._run(
            "pg_ctl",
            "start",
            "--pgdata",
            str(self.datadir),
            "--log",
            str(self.root / "server.log"),
            "--wait",
            f"--timeout={START_TIMEOUT}",
            "--options",
            " ".join(options),
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: ``fast`` or ``immediate``, as ``pg_ctl`` takes them)."""
        self._run("pg_ctl", "stop", "--pgdata", str(self.datadir), "--mode", mode, "--wait")

    def restart(self) -> None:
        """Stop the server (every connection drops) and start it again.

        ``fast``, not ``immediate``: with ``synchronous_commit=off`` a crash
        may lose the last commits, which a test of a restart must not see.
        """
        self.stop("fast")
        self.start()

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, UNPRIVILEGED_USER, "nogroup")


#: Prefix of the clusters' temporary directories.
PREFIX: Final = "ffcloud-pg-"
#: The file in a cluster's directory naming the process that started it.
OWNER_FILE: Final = "owner.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def discard_orphans(bindir: Path) -> int:
    """Stop and delete the clusters whose test process is gone (killed: no teardown ran).

    ``pg_ctl`` detaches the server, so a test run that is killed leaves it
    running; the next run cleans up after it. Returns how many it removed.
    """
    removed = 0
    for owner in Path(tempfile.gettempdir()).glob(f"{PREFIX}*/{OWNER_FILE}"):
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if _alive(pid):
            continue
        orphan = PostgresCluster(bindir, owner.parent, 0, "")
        try:
            if (orphan.datadir / "postmaster.pid").exists():
                orphan.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # already gone: the directory goes anyway
        shutil.rmtree(owner.parent, ignore_errors=True)
        removed += 1
    return removed


def start_cluster(bindir: Path) -> PostgresCluster:
    """Create and start a cluster in a new temporary directory (call ``discard`` after)."""
    discard_orphans(bindir)
    # Directly in the system temporary directory: the unprivileged server
    # user must be able to reach it, and pytest's base directory is private.
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    (root / OWNER_FILE).write_text(str(os.getpid()))
    cluster = PostgresCluster(bindir, root, _free_port(), secrets.token_urlsafe(18))
    try:
        cluster._chown(root)
        cluster.socket_dir.mkdir()
        cluster._chown(cluster.socket_dir)
        cluster.init()
        cluster.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


def discard(cluster: PostgresCluster) -> None:
    """Stop the cluster and delete its directory."""
    try:
        cluster.stop("immediate")
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's throwaway PostgreSQL; skips the test when none can be run here."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL is not installed (scripts/system-deps installs Debian's postgresql; "
            "FFCLOUD_TEST_POSTGRES_BIN may name the directory of initdb and pg_ctl)"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (make installs the postgres extra)")
    cluster = start_cluster(bindir)
    yield cluster
    discard(cluster)


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """The URL of a new, empty database in the session's cluster."""
    return postgres_cluster.database()

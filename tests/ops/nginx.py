"""Run Debian's real nginx on loopback with the sample config of docs/.

The sample is used as written; only what must differ on a test machine is
replaced (ports, certificate paths, IPv6 wildcard listens), and each
replacement must match exactly once, so a change to the sample that the test
does not understand fails loudly instead of going untested.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Final

import attrs
import trio

from tests.ops.units import ROOT

SAMPLE: Final = ROOT / "docs" / "nginx-ffcloud.conf"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the sample should contain {old!r} exactly once"
    return text.replace(old, new)


@attrs.frozen
class Nginx:
    """A running nginx: where it listens and where it logs."""

    https_port: int
    http_port: int
    access_log: Path


def site_config(
    *,
    https_port: int,
    http_port: int,
    relayd_port: int,
    controlplane_port: int,
    cert: Path,
    key: Path,
) -> str:
    """The sample server blocks, pointed at this machine's ports and files."""
    text = SAMPLE.read_text()
    text = _replace_once(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    text = _replace_once(text, "listen [::]:443 ssl http2;", "")
    text = _replace_once(text, "listen 80;", f"listen 127.0.0.1:{http_port};")
    text = _replace_once(text, "listen [::]:80;", "")
    text = _replace_once(text, "server 127.0.0.1:8765;", f"server 127.0.0.1:{relayd_port};")
    text = _replace_once(text, "server 127.0.0.1:8080;", f"server 127.0.0.1:{controlplane_port};")
    text = _replace_once(text, "/etc/letsencrypt/live/ffcloud.example.com/fullchain.pem", str(cert))
    return _replace_once(text, "/etc/letsencrypt/live/ffcloud.example.com/privkey.pem", str(key))


def main_config(workdir: Path, site: Path) -> str:
    """A whole nginx.conf around ``site`` that keeps every file in ``workdir``."""
    temp = {name: workdir / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    # As root, nginx's workers would switch to "nobody", which cannot enter
    # the test's private directory.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
pid {workdir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {site};
}}
"""


def nginx_binary() -> str:
    """Path of nginx; fails the test when it is missing (scripts/system-deps installs it)."""
    path = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    assert path, "nginx is missing: install Debian's nginx-light (make test does)"
    return path


async def serve_nginx(
    workdir: Path,
    *,
    relayd_port: int,
    controlplane_port: int,
    cert: Path,
    key: Path,
    task_status: trio.TaskStatus[Nginx] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run nginx until cancelled (``nursery.start`` returns once its workers run)."""
    https_port, http_port = free_port(), free_port()
    site = workdir / "ffcloud.conf"
    site.write_text(
        site_config(
            https_port=https_port,
            http_port=http_port,
            relayd_port=relayd_port,
            controlplane_port=controlplane_port,
            cert=cert,
            key=key,
        )
    )
    conf = workdir / "nginx.conf"
    conf.write_text(main_config(workdir, site))
    argv = [
        nginx_binary(),
        "-p",
        str(workdir),
        "-c",
        str(conf),
        "-e",
        "stderr",
        "-g",
        "daemon off;",
    ]
    proc = await trio.lowlevel.open_process(argv, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    log = b""
    try:
        # nginx binds its ports before it starts the workers, and says so.
        with trio.fail_after(10):
            while b"start worker process " not in log:
                chunk = await proc.stderr.receive_some(4096)
                assert chunk, f"nginx exited: {log.decode(errors='replace')}"
                log += chunk
        task_status.started(Nginx(https_port, http_port, workdir / "access.log"))
        # Keep reading its log, or nginx blocks once the pipe is full.
        while await proc.stderr.receive_some(4096):
            pass
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.send_signal(signal.SIGQUIT)  # graceful stop
                with trio.move_on_after(10):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            await proc.stderr.aclose()

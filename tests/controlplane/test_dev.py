"""``controlplane dev`` really starts the stack (the web UI's browser tests use it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import trio

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session_members(session: int, name: str) -> list[int]:
    """Live processes of a session whose command line mentions ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z" and name in cmdline:
            found.append(int(entry.name))
    return found


def make_dir(path: Path) -> str:
    path.mkdir(mode=0o700)
    return str(path)


def environment_and_token_file(pid: int) -> tuple[set[str], Path]:
    """The names in a process's environment, and its ``--token-file`` (resolved)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    token_file = Path(cmdline[cmdline.index(b"--token-file") + 1].decode()).resolve()
    return {e.split(b"=", 1)[0].decode() for e in environ if e}, token_file


async def read_until(stream: trio.abc.ReceiveStream, marker: bytes, seen: bytearray) -> None:
    while marker not in seen:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise AssertionError(f"output ended before {marker!r}: {seen.decode()}")
        seen += chunk


async def test_dev_starts_everything_and_stops_on_ctrl_c() -> None:
    http_port, relay_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="cpdev-", dir="/tmp") as top:
        # The local vmagents' directory goes beside the state dir: inside `top` too.
        state = make_dir(Path(top) / "state")
        env = {
            **os.environ,
            "FFCLOUD_DEV_USER": "tester",
            "FFCLOUD_DEV_PASSWORD": "dev password",
            "VMAGENT_DEMO_DELAY": "0",
            "CONTROLPLANE_GITHUB_TOKEN": "ghp-dev-secret",
        }
        env.pop("ANTHROPIC_API_KEY", None)
        # relayd slow to start (as on a loaded machine): the local vmagent must
        # still not dial it before it listens.
        slow_relayd = Path(top) / "slow-relayd"
        relayd = Path(sys.executable).parent / "relayd"
        slow_relayd.write_text(f'#!/bin/sh\nsleep 1\nexec {relayd} "$@"\n')
        slow_relayd.chmod(0o700)
        argv = [
            str(Path(sys.executable).parent / "controlplane"),
            "dev",
            "--relayd-command",
            str(slow_relayd),
            "--state-dir",
            state,
            "--listen",
            f"127.0.0.1:{http_port}",
            "--relay-listen",
            f"127.0.0.1:{relay_port}",
        ]
        # Its own session, like a terminal's: Ctrl-C goes to its foreground process group.
        errors = (Path(state) / "dev.stderr").open("wb")
        process = await trio.lowlevel.open_process(
            argv,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
            cwd=str(REPO),
            start_new_session=True,
        )
        assert process.stdout is not None
        try:
            with trio.fail_after(60):
                output = bytearray()
                await read_until(process.stdout, b"Press Ctrl-C", output)
                text = output.decode()
                url = f"http://127.0.0.1:{http_port}"
                assert f"FF Cloud is running at {url}" in text
                assert "log in as tester with password dev password" in text
                assert "engine demo" in text
                async with httpx.AsyncClient(base_url=url, timeout=5) as http:
                    # The stack is another process, with no event to wait on.
                    async def healthy() -> bool:
                        return (await http.get("/healthz")).status_code == 200

                    await wait_until(healthy, interval=0.05)
                    login = await http.post(
                        "/api/auth/login", json={"username": "tester", "password": "dev password"}
                    )
                    assert login.status_code == 200
                    headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
                    config = (await http.get("/api/config")).json()
                    assert config == {"relayUrl": f"ws://127.0.0.1:{relay_port}"}
                    ws = (
                        await http.post(
                            "/api/workspaces",
                            json={"issueUrl": "https://github.com/octo/hello/issues/1"},
                            headers=headers,
                        )
                    ).json()

                    # Placed on the local vmagent, which reported.
                    async def idle() -> bool:
                        found = await http.get(f"/api/workspaces/{ws['id']}", headers=headers)
                        return bool(found.json()["status"] == "idle")

                    await wait_until(idle, interval=0.05)
                assert session_members(process.pid, "relayd")
                vmagents = session_members(process.pid, "vmagent")
                assert vmagents
                # Least privilege: the vmagent saw none of the control plane's secrets,
                # and runs outside its state dir.
                for pid in vmagents:
                    names, token_file = environment_and_token_file(pid)
                    assert "FFCLOUD_DEV_PASSWORD" not in names
                    assert not [n for n in names if n.startswith("CONTROLPLANE_")]
                    assert "VMAGENT_DEMO_DELAY" in names
                    assert not token_file.is_relative_to(state)
                # A clean start logs nothing at warning level (dev's default): in
                # particular no vmagent dialling relayd before it listens.
                errors.flush()
                started_log = (Path(state) / "dev.stderr").read_text()
                assert "HandshakeError" not in started_log, started_log
                assert "relay connection ended" not in started_log, started_log
                assert "not reachable" not in started_log, started_log
                os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
                await read_until(process.stdout, b"FF Cloud stopped.", output)
                assert await process.wait() == 0
            # Every service stopped quietly: log lines, never a traceback.
            assert "Traceback" not in (Path(state) / "dev.stderr").read_text()
            # relayd and the vmagent went with it.
            assert session_members(process.pid, "relayd") == []
            assert session_members(process.pid, "vmagent") == []
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", relay_port)) != 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            errors.close()

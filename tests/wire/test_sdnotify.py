"""The notify protocol reaches a real datagram socket."""

from __future__ import annotations

import socket
from pathlib import Path

from wire.sdnotify import notify, watchdog_interval


def test_notify_sends_datagram(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert notify("READY=1", {"NOTIFY_SOCKET": str(path)})
        assert server.recv(100) == b"READY=1"


def test_notify_without_socket_is_a_no_op() -> None:
    assert not notify("READY=1", {})


def test_watchdog_interval_is_half_the_timeout() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) is None

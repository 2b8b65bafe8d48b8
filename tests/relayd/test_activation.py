"""systemd socket activation: the parsing of what systemd passes, and relayd on a passed socket."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import trio

from relayd.activation import ActivationError, listen_fds, websocket_socket
from tests.support.relayd import recv_json, send_json, start_relayd


def test_listen_fds_are_for_this_process_only_and_leave_no_trace() -> None:
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "ws:metrics", "HOME": "/"}
    assert listen_fds(env, 42) == [(3, "ws"), (4, "metrics")]
    assert env == {"HOME": "/"}
    env = {"LISTEN_PID": "41", "LISTEN_FDS": "1"}
    assert listen_fds(env, 42) == []  # for another process (a parent's, inherited)
    assert env == {}
    assert listen_fds({"LISTEN_PID": "42", "LISTEN_FDS": "x"}, 42) == []
    assert listen_fds({"LISTEN_PID": "42", "LISTEN_FDS": "1"}, 42) == [(3, "unknown")]
    assert listen_fds({}, 42) == []


def test_the_websocket_socket_is_the_named_or_the_only_one() -> None:
    with socket.socket() as a, socket.socket() as b, socket.socket(type=socket.SOCK_DGRAM) as u:
        a.bind(("127.0.0.1", 0))
        a.listen()
        b.bind(("127.0.0.1", 0))  # bound, not listening
        assert websocket_socket([]) is None
        chosen = websocket_socket([(b.fileno(), "metrics"), (a.fileno(), "ws")])
        assert chosen is not None
        assert chosen.getsockname() == a.getsockname()
        chosen.detach()  # the same descriptor as a: a closes it
        with pytest.raises(ActivationError, match="FileDescriptorName=ws"):
            websocket_socket([(a.fileno(), "x"), (b.fileno(), "y")])
        for fd in (b.fileno(), u.fileno()):
            with pytest.raises(ActivationError, match="not a listening TCP socket"):
                websocket_socket([(fd, "ws")])


async def test_relayd_serves_on_the_socket_systemd_passes(tmp_path: Path) -> None:
    with socket.socket() as passed:
        passed.bind(("127.0.0.1", 0))
        passed.listen()
        port = passed.getsockname()[1]
        # As systemd does: the socket as fd 3, LISTEN_PID the very process.
        script = (
            "import os, sys\n"
            f"os.dup2({passed.fileno()}, 3)\n"
            "env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS='1',"
            " LISTEN_FDNAMES='ws')\n"
            "os.execve(sys.argv[1], sys.argv[1:], env)\n"
        )
        async with start_relayd(
            tmp_path, wrapper=[sys.executable, "-c", script], pass_fds=[passed.fileno()]
        ) as relay:
            with trio.fail_after(20):
                assert relay.port == port  # not the --listen of start_relayd
                async with relay.connect_client("u1") as ws:
                    await send_json(ws, {"type": "subscribe", "workspaceId": "w1"})
                    assert (await recv_json(ws))["code"] == "not_found"
                listening = [e for e in relay.logs if e.get("msg") == "listening"]
                assert listening[0]["socketActivation"] is True

"""systemd socket activation (``sd_listen_fds(3)``), by hand: it is a few lines.

With a ``relayd.socket`` unit, systemd binds relayd's WebSocket port and hands
the listening socket over at start (file descriptors from 3, counted by
``LISTEN_FDS``, for the process ``LISTEN_PID``, named by ``LISTEN_FDNAMES``).
Connections that arrive while relayd restarts wait in the socket's backlog
instead of being refused.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping
from typing import Final

#: The first file descriptor systemd passes.
LISTEN_FDS_START: Final = 3
#: The name (``FileDescriptorName=``) of the socket relayd serves WebSocket on.
WS_NAME: Final = "ws"


class ActivationError(Exception):
    """The passed sockets cannot be served (the message says why)."""


def listen_fds(env: MutableMapping[str, str], pid: int) -> list[tuple[int, str]]:
    """The ``(fd, name)`` pairs passed to process ``pid``; the variables are removed.

    Removed whether or not they were meant for this process, so that no child
    takes them for its own (as ``sd_listen_fds(unset_environment=1)`` does).
    """
    listen_pid = env.pop("LISTEN_PID", "")
    count = env.pop("LISTEN_FDS", "")
    names = env.pop("LISTEN_FDNAMES", "").split(":")
    if not listen_pid.isdigit() or int(listen_pid) != pid or not count.isdigit():
        return []
    return [
        (LISTEN_FDS_START + i, names[i] if i < len(names) and names[i] else "unknown")
        for i in range(int(count))
    ]


def websocket_socket(passed: list[tuple[int, str]]) -> socket.socket | None:
    """The passed socket to serve WebSocket on: the one named ``ws``, else the only one.

    None when nothing was passed. Raises :class:`ActivationError` when the
    choice is unclear or the socket is not a listening TCP socket.
    """
    if not passed:
        return None
    named = [fd for fd, name in passed if name == WS_NAME]
    if len(named) > 1 or (not named and len(passed) > 1):
        raise ActivationError(
            f"{len(passed)} sockets passed; name the WebSocket one FileDescriptorName={WS_NAME}"
        )
    fd = named[0] if named else passed[0][0]
    sock = socket.socket(fileno=fd)
    if (
        sock.family not in (socket.AF_INET, socket.AF_INET6)
        or sock.type != socket.SOCK_STREAM
        or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    ):
        sock.detach()
        raise ActivationError(f"socket {fd} is not a listening TCP socket")
    return sock


def passed_websocket_socket() -> socket.socket | None:
    """:func:`websocket_socket` of what systemd passed this process."""
    return websocket_socket(listen_fds(os.environ, os.getpid()))

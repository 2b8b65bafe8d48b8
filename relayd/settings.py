"""relayd's settings: every limit is named here, with its default and its flag.

Each flag of the command line (docs/protocol.md section 8, plus the limits) can
also come from the environment as ``RELAYD_<FLAG>`` (upper case, dashes to
underscores); a flag given on the command line wins. ``--allowed-origin`` is
repeated on the command line and comma-separated in ``RELAYD_ALLOWED_ORIGIN``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from wire.protocol import DEFAULT_ISSUER
from wire.tokens import DEFAULT_LEEWAY

MIB: Final = 1024 * 1024
DEFAULT_ORIGINS: Final = ("http://127.0.0.1:8080", "http://localhost:8080")


@attrs.frozen
class Settings:
    """Everything relayd can be told; defaults suit one machine."""

    listen: str = "127.0.0.1:8765"
    control_socket: str = ".state/relayd.sock"
    #: 0o600 admits only relayd's own user (and root); 0o660 also the socket's group.
    control_socket_mode: int = 0o600
    jwks: str = ".state/jwks.json"
    #: The control plane's revocation list (empty: ``revoked.json`` beside ``jwks``).
    revocations: str = ""
    issuer: str = DEFAULT_ISSUER
    allowed_origins: tuple[str, ...] = DEFAULT_ORIGINS
    #: ``HOST:PORT`` for Prometheus metrics; empty turns them off.
    metrics_listen: str = "127.0.0.1:9765"
    log_level: str = "info"

    #: Longest client frame, in characters of the text (``len()``).
    max_client_frame: int = 1 * MIB
    #: Longest VM frame, in characters.
    max_vm_frame: int = 16 * MIB
    #: relayd's own frames (errors) waiting to go out to one client; beyond
    #: either bound it is closed with 4008. What the VM sends is read from
    #: the workspace's log instead, at the client's pace.
    client_queue_messages: int = 1024
    client_queue_bytes: int = 32 * MIB
    #: Frames waiting to go out to one VM. Client messages wait for room (the
    #: client is not read meanwhile); relayd's own frames beyond it close the VM (4008).
    vm_queue_messages: int = 1024
    vm_queue_bytes: int = 64 * MIB
    #: The per-session log (the replay buffer), by count and by characters:
    #: every subscriber reads it at its own pace; one that falls out of it
    #: gets a fresh snapshot.
    replay_messages: int = 5000
    replay_bytes: int = 8 * MIB
    #: Seconds a connection may take no bytes at all, while relayd has data
    #: for it, before it is closed with 4008 (0: never).
    stall_timeout: float = 30.0
    #: Messages per second a client may send (token bucket) and the burst it may save up.
    client_rate: float = 20.0
    client_burst: int = 40
    #: Open client connections one user may hold at once.
    max_connections_per_user: int = 32
    #: (workspace, session) pairs one client connection may subscribe to at once.
    max_subscriptions: int = 256
    #: Session logs relayd keeps per workspace (rooms, each with its own replay
    #: buffer); a frame or subscribe for one more session is refused (``too_large``).
    max_sessions_per_workspace: int = 64
    #: ``request`` s one client connection may have in flight (sent, not yet answered).
    max_requests_in_flight: int = 16
    #: Seconds a ``request`` may wait for its ``reply`` before relayd ends it
    #: with ``error`` ``vm_offline`` and frees its slot (0: it waits until
    #: the connection closes).
    request_timeout: float = 60.0
    #: Seconds between WebSocket pings; a peer that misses two in a row is closed.
    ping_interval: float = 20.0
    #: Seconds a peer has to finish its opening handshake.
    handshake_timeout: float = 10.0
    #: Seconds a closing peer gets to take the frame in flight and the close frame.
    close_timeout: float = 5.0
    #: Seconds SIGTERM waits for peers to close before relayd exits anyway.
    shutdown_timeout: float = 10.0
    #: Clock skew tolerated on ``exp``/``iat``, in seconds.
    token_leeway: float = DEFAULT_LEEWAY
    #: Audit events kept while no control plane is connected.
    audit_buffer: int = 10000
    #: Lines waiting to go out to one control-socket peer.
    control_queue_lines: int = 10000

    def listen_address(self) -> tuple[str, int]:
        """``listen`` as ``(host, port)``."""
        return split_host_port(self.listen)

    @property
    def revocations_path(self) -> str:
        """The revocation list file: ``--revocations``, else ``revoked.json`` beside the JWKS."""
        return self.revocations or str(Path(self.jwks).parent / "revoked.json")


def split_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[v6]:PORT``) as a pair; raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]")
    return host, int(port)


# (flag, attribute, type, help). Types: str, int, float, "mode", "origins".
_OPTIONS: Final[tuple[tuple[str, str, Any, str], ...]] = (
    ("--listen", "listen", str, "HOST:PORT to serve WebSocket on (port 0: any free port)"),
    ("--control-socket", "control_socket", str, "path of the Unix control socket"),
    ("--control-socket-mode", "control_socket_mode", "mode", "octal mode: 600 or 660"),
    ("--jwks", "jwks", str, "JWKS file of the token public keys (re-read on SIGHUP)"),
    (
        "--revocations",
        "revocations",
        str,
        "revoked-token list file, re-read on SIGHUP (none: revoked.json beside --jwks)",
    ),
    ("--issuer", "issuer", str, "required token issuer"),
    ("--allowed-origin", "allowed_origins", "origins", "allowed browser Origin (repeatable)"),
    ("--metrics-listen", "metrics_listen", str, "HOST:PORT for Prometheus metrics; '' = off"),
    ("--log-level", "log_level", str, "debug, info, warning or error"),
    ("--max-client-frame", "max_client_frame", int, "longest client frame (characters)"),
    ("--max-vm-frame", "max_vm_frame", int, "longest VM frame (characters)"),
    ("--client-queue-messages", "client_queue_messages", int, "relayd's own frames per client"),
    ("--client-queue-bytes", "client_queue_bytes", int, "relayd's own frames per client (chars)"),
    ("--vm-queue-messages", "vm_queue_messages", int, "outgoing queue per VM"),
    ("--vm-queue-bytes", "vm_queue_bytes", int, "outgoing queue per VM (chars)"),
    ("--replay-messages", "replay_messages", int, "log per workspace (messages)"),
    ("--replay-bytes", "replay_bytes", int, "log per workspace (chars)"),
    ("--stall-timeout", "stall_timeout", float, "seconds a peer may take no bytes (0: never)"),
    ("--client-rate", "client_rate", float, "messages per second per client"),
    ("--client-burst", "client_burst", int, "burst of messages per client"),
    ("--max-connections-per-user", "max_connections_per_user", int, "connections per user"),
    ("--max-subscriptions", "max_subscriptions", int, "subscriptions per connection"),
    (
        "--max-sessions-per-workspace",
        "max_sessions_per_workspace",
        int,
        "session logs kept per workspace",
    ),
    (
        "--max-requests-in-flight",
        "max_requests_in_flight",
        int,
        "requests per connection awaiting their reply",
    ),
    (
        "--request-timeout",
        "request_timeout",
        float,
        "seconds a request waits for its reply (0: until the connection closes)",
    ),
    ("--ping-interval", "ping_interval", float, "seconds between pings"),
    ("--handshake-timeout", "handshake_timeout", float, "seconds to finish the handshake"),
    ("--close-timeout", "close_timeout", float, "seconds a closing peer gets"),
    ("--shutdown-timeout", "shutdown_timeout", float, "seconds SIGTERM waits for peers"),
    ("--token-leeway", "token_leeway", float, "clock skew tolerated on exp/iat (seconds)"),
    ("--audit-buffer", "audit_buffer", int, "audit events kept with no control plane"),
    ("--control-queue-lines", "control_queue_lines", int, "lines queued per control peer"),
)


def _parse_mode(text: str) -> int:
    mode = int(text, 8)
    if mode not in (0o600, 0o660):
        raise ValueError("control socket mode must be 600 or 660")
    return mode


def _convert(kind: Any, text: str) -> Any:
    if kind == "mode":
        return _parse_mode(text)
    if kind == "origins":
        return tuple(o.strip() for o in text.split(",") if o.strip())
    return kind(text)


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from the command line, then ``RELAYD_*`` variables, then defaults."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="relayd",
        description="FF Cloud relay: routes messages between clients and VMs. "
        "Every flag can also be set as RELAYD_<FLAG> in the environment.",
    )
    defaults = Settings()
    for flag, attr, kind, help_text in _OPTIONS:
        default = getattr(defaults, attr)
        if kind == "mode":
            default = f"{default:o}"
        elif kind == "origins":
            default = ",".join(default)
        elif default == "":
            default = "none"
        env_name = "RELAYD_" + flag[2:].upper().replace("-", "_")
        full_help = f"{help_text} [default {default!s} or ${env_name}]".replace("%", "%%")
        metavar = attr.split("_")[-1].upper()
        if kind == "origins":
            parser.add_argument(flag, dest=attr, action="append", help=full_help, metavar="ORIGIN")
        else:
            parser.add_argument(flag, dest=attr, help=full_help, metavar=metavar)
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for flag, attr, kind, _help in _OPTIONS:
        given = getattr(args, attr)
        env_name = "RELAYD_" + flag[2:].upper().replace("-", "_")
        try:
            if given is not None:
                values[attr] = tuple(given) if kind == "origins" else _convert(kind, given)
            elif env_name in env:
                values[attr] = _convert(kind, env[env_name])
        except ValueError as exc:
            parser.error(f"{flag} / {env_name}: {exc}")
    settings = Settings(**values)
    for flag, addr in (
        ("--listen", settings.listen),
        ("--metrics-listen", settings.metrics_listen),
    ):
        if addr:
            try:
                split_host_port(addr)
            except ValueError as exc:
                parser.error(f"{flag}: {exc}")
    return settings

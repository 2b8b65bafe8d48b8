"""relayd: the trio relay daemon between clients and the VMs that own their workspaces.

Modules, outside in: :mod:`relayd.main` (command line, signals, systemd
notify), :mod:`relayd.server` (WebSocket handshakes), :mod:`relayd.control`
(the Unix control socket), :mod:`relayd.relay` (routing), :mod:`relayd.peer`
(one connection's queue, writer, keepalive), and the pure parts without I/O:
:mod:`relayd.room`, :mod:`relayd.handshake`, :mod:`relayd.ratelimit`,
:mod:`relayd.settings`.
"""

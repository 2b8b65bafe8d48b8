"""A workspace's status over its sessions: the one that most needs the user.

A list of workspaces shows one status each, and a workspace holds several
sessions (docs/protocol.md, "Sessions"). It shows the status of its most
urgent session: :data:`URGENCY` from first to last, ties going to main and
then to the session whose status changed most recently. Pure: no rooms, no I/O.
"""

from __future__ import annotations

from typing import Final

from wire.protocol import MAIN_SESSION, Status

#: Most urgent first. A word the VM made up ranks after all of these.
URGENCY: Final = (
    Status.WAITING_FOR_INPUT,
    Status.RUNNING,
    Status.ERROR,
    Status.STARTING,
    Status.IDLE,
    Status.STOPPED,
)
_RANK: Final = {str(word): rank for rank, word in enumerate(URGENCY)}


def urgency(status: str) -> int:
    """The rank of a status word: 0 is the most urgent."""
    return _RANK.get(status, len(URGENCY))


def precedence(status: str, session_id: str, changed: int) -> tuple[int, bool, int]:
    """The key that orders sessions for the aggregate: the smallest wins.

    ``changed`` is when the session's status last changed (any rising count).
    """
    return urgency(status), session_id != MAIN_SESSION, -changed

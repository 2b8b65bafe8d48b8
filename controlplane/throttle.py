"""Login throttling: the pure rules (the database side is :mod:`controlplane.loginlimits`).

Every login attempt is *reserved* before its password is checked, under two
keys: the account with the client's address (``pair:``), and the account
alone (``acct:``). Each key allows some free attempts; after them every
further attempt must wait a delay that doubles with each attempt, up to
``max_delay``; an attempt that comes too early gets 429 and is not counted.
A key is forgotten after ``window`` quiet seconds, and a good login forgets
its ``pair:`` key and gives its reservation back to the ``acct:`` key.

Why a delay and not a lock: anyone can send wrong passwords for anyone's
account, so the account-wide key must only slow guessing down (to one try
per ``max_delay`` from all addresses together), never shut the owner out.
The ``pair:`` key has fewer free attempts, so one address guessing is
slowed long before the account-wide key starts to delay others.
"""

from __future__ import annotations

from typing import Final

import attrs

#: The first delay, in seconds, once a key's free attempts are spent (then 2, 4, 8...).
FIRST_DELAY: Final = 1.0
#: Longest user name part of a key (longer names are cut; the API caps them anyway).
MAX_KEY_NAME: Final = 200


@attrs.frozen
class Policy:
    """The throttling settings."""

    #: Free attempts per (account, address).
    pair_free: int
    #: Free attempts per account from every address together.
    account_free: int
    #: Quiet seconds after which a key's attempts are forgotten.
    window: float
    #: Longest delay between attempts, in seconds.
    max_delay: float


@attrs.frozen
class KeyState:
    """What is stored per key."""

    attempts: int
    last_at: float
    next_at: float


def keys_for(username: str, address: str) -> tuple[str, str]:
    """The ``(pair, account)`` keys of an attempt."""
    name = username.casefold()[:MAX_KEY_NAME]
    return f"pair:{name}|{address}", f"acct:{name}"


def delay_after(attempts: int, free: int, max_delay: float) -> float:
    """Seconds the next attempt must wait once ``attempts`` were made (0 while free)."""
    over = attempts - free
    if over < 0:
        return 0.0
    # Capped before the power so huge counts cannot overflow.
    return min(FIRST_DELAY * 2.0 ** min(over, 64), max_delay)


def current(state: KeyState | None, now: float, window: float) -> KeyState | None:
    """The state that still counts at ``now`` (None once the key was quiet for ``window``)."""
    if state is None or state.last_at + window <= now:
        return None
    return state


def wait_for(state: KeyState | None, now: float, window: float) -> float:
    """Seconds until a key allows an attempt (0: now)."""
    live = current(state, now, window)
    return 0.0 if live is None else max(0.0, live.next_at - now)


def reserve(state: KeyState | None, now: float, free: int, policy: Policy) -> KeyState:
    """The key's state once one more attempt is reserved at ``now``."""
    live = current(state, now, policy.window)
    attempts = 1 if live is None else live.attempts + 1
    return KeyState(attempts, now, now + delay_after(attempts, free, policy.max_delay))


def give_back(state: KeyState, policy: Policy) -> KeyState:
    """The account key's state after a reserved attempt turned out a good login."""
    attempts = max(0, state.attempts - 1)
    next_at = state.last_at + delay_after(attempts, policy.account_free, policy.max_delay)
    return KeyState(attempts, state.last_at, min(state.next_at, next_at))

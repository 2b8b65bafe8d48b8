"""Waiting for a condition that has no event to wait on.

State in another process (a service under test, its log, its HTTP answers) or
in a worker thread cannot wake a trio task. :func:`wait_until` asks again
every ``interval`` seconds until the answer is yes; the caller's
``trio.fail_after`` bounds how long, so a condition that never comes fails the
test instead of hanging it. In-process state that has an event is waited on
with the event, never with this.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Final

import trio

#: How often a condition is asked again, by default (seconds).
INTERVAL: Final = 0.01


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]], *, interval: float = INTERVAL
) -> None:
    """Return once ``check()`` (a function or a coroutine function) is true."""
    while True:
        answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return
        await trio.sleep(interval)

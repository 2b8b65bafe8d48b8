"""``wait_until`` returns when its condition holds, and only then."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.support.waiting import wait_until


async def test_returns_once_the_condition_holds(autojump_clock: trio.testing.MockClock) -> None:
    asked: list[float] = []

    def check() -> bool:
        asked.append(trio.current_time())
        return len(asked) == 4

    start = trio.current_time()
    await wait_until(check, interval=0.5)
    assert asked == [start, start + 0.5, start + 1.0, start + 1.5]


async def test_awaits_a_coroutine_condition(autojump_clock: trio.testing.MockClock) -> None:
    answers = iter([False, False, True])

    async def check() -> bool:
        await trio.lowlevel.checkpoint()
        return next(answers)

    await wait_until(check)
    assert next(answers, None) is None


async def test_a_condition_that_never_holds_ends_with_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(trio.TooSlowError), trio.fail_after(3):
        await wait_until(lambda: False)

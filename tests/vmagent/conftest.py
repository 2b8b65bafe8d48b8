"""Fixtures of the vmagent tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from tests.vmagent.fakerelay import FakeRelay


@pytest.fixture
async def relay() -> AsyncIterator[FakeRelay]:
    """A fake relayd on loopback that the agent under test dials."""
    async with trio.open_nursery() as nursery:
        yield await nursery.start(FakeRelay().run)
        nursery.cancel_scope.cancel()

"""Fixtures for relayd's tests: a real relayd subprocess per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.relayd import Relayd, start_relayd


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relayd]:
    async with start_relayd(tmp_path) as running:
        yield running

"""Fixtures: a control plane app on a temporary state dir, and a fake GitHub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attrs
import pytest
from argon2 import PasswordHasher
from quart_trio import QuartTrio

from controlplane import passwords, store
from controlplane.app import create_app
from controlplane.coordinator import Coordinator
from controlplane.db import Database
from controlplane.keys import KeyRing
from controlplane.metrics import Metrics
from controlplane.services import Services
from controlplane.settings import Settings
from tests.support.fake_github import FakeGitHub, fake_github

PASSWORD = "correct horse battery staple"


@attrs.define
class Clock:
    """A wall clock the test moves."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with the smallest cost: the tests check the flow, not the cost."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    passwords._dummy_hash.cache_clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database of the store's tests: each test runs on SQLite and on the
    session's throwaway PostgreSQL (a module with other needs defines its own)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cp.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    database = Database.open(url)
    yield database
    database.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with fake_github() as fake:
        fake.add_issue("octo", "hello", 7, "Make it greet", "Say hello to everyone.")
        yield fake


@pytest.fixture
def settings(tmp_path: Path, github: FakeGitHub) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        github_api_url=github.url,
        github_timeout=1.0,
        webui_dir=tmp_path / "webui",
        login_max_failures=3,
        relay_url="ws://127.0.0.1:8765",
    )


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    settings.state_dir.mkdir(parents=True)
    keyring = KeyRing(settings.state_dir)
    keyring.load()
    db = Database.open(settings.database_url)
    hashed = passwords.hash_password(PASSWORD)
    db.run_sync(lambda c: [store.add_user(c, name, hashed) for name in ("alice", "bob")])
    yield Services(
        settings=settings,
        db=db,
        keyring=keyring,
        coordinator=Coordinator(db),
        metrics=Metrics(),
    )
    db.close()


@pytest.fixture
def app(services: Services) -> QuartTrio:
    return create_app(services)

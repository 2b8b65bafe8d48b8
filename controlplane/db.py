"""The database: one SQLAlchemy engine, used from trio through worker threads.

SQLAlchemy Core is synchronous; every unit of work is a plain function of a
``Connection`` run in a worker thread inside one transaction. With SQLite all
work goes through one thread at a time (SQLite has one writer anyway, and
serialising avoids ``database is locked`` on lock upgrades); other databases
get a few threads.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

import sqlalchemy as sa
import trio
from alembic import command
from alembic.config import Config

from controlplane.statedir import private_sqlite_files

T = TypeVar("T")

#: Worker threads for databases that allow concurrent writers.
DB_THREADS = 4
#: Milliseconds SQLite waits for a lock held by another process (the CLI).
SQLITE_BUSY_TIMEOUT_MS = 5000


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def create_engine(url: str) -> sa.Engine:
    """An engine; SQLite gets WAL, foreign keys and durable commits."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit survives a crash of the machine, not only of the process.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    return engine


def alembic_config(engine: sa.Engine) -> Config:
    """An Alembic configuration that uses the package's migrations."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("controlplane") / "migrations"))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def migrate(engine: sa.Engine) -> None:
    """Bring the schema up to date (blocking; call at startup)."""
    config = alembic_config(engine)
    # Alembic narrates every start at info level; only its warnings matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    """Runs units of work in worker threads, each in one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        threads = 1 if engine.dialect.name == "sqlite" else DB_THREADS
        self._limiter = trio.CapacityLimiter(threads)

    @classmethod
    def open(cls, url: str) -> Database:
        """Open the database at ``url`` and run the migrations (a SQLite file stays 0600)."""
        private_sqlite_files(url)
        engine = create_engine(url)
        migrate(engine)
        return cls(engine)

    def run_sync(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in one transaction in the calling thread."""
        with self.engine.begin() as connection:
            return work(connection)

    async def run(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in one transaction in a worker thread.

        The thread is not abandoned on cancellation: a transaction either
        commits or rolls back, it is never left half-done.
        """
        return await trio.to_thread.run_sync(self.run_sync, work, limiter=self._limiter)

    async def ping(self) -> None:
        """Raise when the database cannot answer a trivial query."""
        await self.run(lambda c: c.execute(sa.text("SELECT 1")).scalar_one())

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

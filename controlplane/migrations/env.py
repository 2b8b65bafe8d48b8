"""Alembic environment: migrations run on the connection the caller hands in."""

from __future__ import annotations

from alembic import context

from controlplane.schema import metadata

config = context.config
target_metadata = metadata


def run_migrations() -> None:
    """Run on ``config.attributes['connection']``, or on a fresh engine (alembic CLI)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    from controlplane.db import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations()

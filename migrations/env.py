"""Alembic environment: runs on a connection botkit passes in, or on BOTKIT_STORAGE__URL."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from botkit.store.models import Base, included_in_schema

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        include_name=included_in_schema,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


def run_migrations_online() -> None:
    """Use botkit's connection when given one (the normal path), else the URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("BOTKIT_STORAGE__URL") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set BOTKIT_STORAGE__URL or use: botkit db upgrade --config FILE")
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run botkit db upgrade")
run_migrations_online()

"""Fixtures of the fast tier: a repository on SQLite in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from botkit.store.db import create_engine
from botkit.store.models import Base
from botkit.store.repository import Repository


@pytest.fixture
async def repo() -> AsyncIterator[Repository]:
    """A repository on a fresh SQLite database in memory (the schema made directly)."""
    engine = create_engine("sqlite+aiosqlite://")  # in memory: one connection, shared
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    repo = Repository(engine, cached_chats=4, owner="test")
    yield repo
    await repo.close()
    await engine.dispose()

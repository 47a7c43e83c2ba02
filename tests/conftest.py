"""Shared fixtures: a config on a temporary database, and a started Bot on the bundled model."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from botkit.adapters.memory import MemoryTarget
from botkit.compose import build_bot
from botkit.config import Config
from botkit.core.app import Bot
from botkit.core.events import ChatKey, Incoming, User

REPO = Path(__file__).resolve().parent.parent

# httpx honours proxy variables; the emulators are on loopback.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"

MakeConfig = Callable[..., Config]

_UNIT = Path(__file__).resolve().parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast tier is tests/unit (no model, no server, no subprocess: `make test-fast`);
    every other test is marked slow."""
    for item in items:
        if not item.path.is_relative_to(_UNIT):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    """Build a Config whose database lives in tmp_path; keyword sections override defaults.

    Recall and vectors are off unless a test turns them on (defaults={"memory": True},
    retrieval={"vectors": True}): recall adds to every prompt that the other tests check, and
    the embedder is a second model to load (tests/integration/test_retrieval.py tests them).
    """

    def make(**sections: Any) -> Config:
        data: dict[str, Any] = {
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"},
            "defaults": {"memory": False},
            "retrieval": {"vectors": False},
        }
        for name, section in sections.items():
            merged = name in ("defaults", "retrieval") and isinstance(section, dict)
            data[name] = {**data[name], **section} if merged else section
        return Config(**data)

    return make


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database: SQLite in tmp_path, or the PostgreSQL that .ci/run starts."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    yield await empty_postgres()


@pytest.fixture
async def bot(make_config: MakeConfig) -> AsyncIterator[Bot]:
    """A started Bot with the real bundled model and default settings."""
    async with build_bot(make_config(), base_dir=REPO) as instance:
        yield instance


def incoming(
    text: str, chat: str = "a", *, user: str = "alice", is_dm: bool = True, trusted: bool = True
) -> Incoming:
    """A message from the bot's owner (trusted=False: from anyone else)."""
    return Incoming(
        chat=ChatKey("test", chat),
        user=User(id=user, name=user, trusted=trusted),
        text=text,
        is_dm=is_dm,
    )


async def say(bot: Bot, text: str, chat: str = "a", *, trusted: bool = True) -> MemoryTarget:
    """Send text to the bot in chat and return what it answered."""
    target = MemoryTarget()
    await bot.router.handle(incoming(text, chat, trusted=trusted), target)
    return target


async def empty_postgres() -> str:
    """The URL of the PostgreSQL that .ci/run starts, emptied (skipped where none is running
    outside CI; CI must run these cases)."""
    from sqlalchemy import text

    from botkit.store.db import create_engine

    url = os.environ.get("BOTKIT_TEST_POSTGRES_URL")
    if not url and os.environ.get("CI"):
        pytest.fail("CI must run the PostgreSQL cases: .ci/run starts a server (.ci/postgres)")
    if not url:
        pytest.skip('set BOTKIT_TEST_POSTGRES_URL (eval "$(.ci/postgres)"); CI always does')
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    return url

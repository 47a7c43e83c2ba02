"""What the platform tests share: stopping every bot a fixture started, and a debug log."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy import update

from botkit.core.app import Bot
from botkit.store.models import LeaseRow


async def crash(bot: Bot) -> None:
    """What a crash leaves of a running bot in the database: its heartbeat stopped an hour
    ago, so any process takes its replies in flight as cut. (Its objects stay for teardown.)"""
    assert bot._keeper is not None
    bot._keeper.cancel()
    async with bot.repo.engine.begin() as conn:
        await conn.execute(
            update(LeaseRow)
            .where(LeaseRow.id == bot.repo.owner)
            .values(heartbeat=LeaseRow.heartbeat - 3600)
        )


async def stop_all(running: list[tuple[Any, asyncio.Task[None]]]) -> None:
    """Stop each adapter (and wait for it), close its bot, stop its emulator."""
    for harness, task in running:
        await harness.adapter.stop()
        await task
        await harness.bot.close()
        await harness.emulator.stop()


@contextlib.contextmanager
def debug_log() -> Iterator[io.StringIO]:
    """Everything logged at DEBUG and above while the block runs, through the root logger's
    handlers as botkit configures them (redaction filters included)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)

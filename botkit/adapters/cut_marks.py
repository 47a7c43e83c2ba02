"""Marking the replies a crash cut on their platform, by the adapter of their bot.

Any process sharing the database may recover a cut reply (botkit.store.leases), at its start
or while it runs, but only the reply's bot can edit its message: the reply waits in the store
until an adapter of that bot marks it. An adapter marks what waits once connected, before it
takes messages, then at every [service] heartbeat_interval while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from botkit.store.cut_marks import CutMarks, CutReply

__all__ = ["CutReplyMarker"]

log = logging.getLogger(__name__)

MarkOne = Callable[[CutReply], Awaitable[None]]


class CutReplyMarker:
    """Marks one bot's cut replies: mark(cut) edits the message (and logs what fails)."""

    def __init__(
        self, marks: CutMarks, platform: str, bot_prefix: str, mark: MarkOne, interval: float
    ) -> None:
        self._marks = marks
        self._platform = platform
        self._bot_prefix = bot_prefix  # "BOT/": the keys of this bot's chats
        self._mark = mark
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def mark_waiting(self) -> int:
        """Mark every cut reply of this bot that waits; returns how many."""
        waiting = await self._marks.pending(self._platform, self._bot_prefix)
        for cut in waiting:
            await self._mark(cut)
            await self._marks.done(cut.id)  # a kill before this marks it again: same text
        return len(waiting)

    async def start(self) -> None:
        """Mark what waits now, then keep marking what recovery finds while running."""
        await self.mark_waiting()
        if self._task is None:
            self._task = asyncio.create_task(self._keep())

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.mark_waiting()
            except Exception as exc:  # the database unreachable: tried again next time
                log.warning("%s: marking cut replies failed: %s", self._platform, exc)

    async def stop(self) -> None:
        """Stop marking."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

"""Marking the replies a crash cut on their platform, by the adapter of their bot.

Any process sharing the database may recover a cut reply (botkit.store.leases), at its start
or while it runs, but only the reply's bot can edit its message: the reply waits in the store
until an adapter of that bot marks it. An adapter marks what waits once connected, before it
takes messages, then at every [service] heartbeat_interval while it runs. The marker writes the
mark (interrupted_ending, at the platform's message length); the adapter only edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from botkit.core.streaming import interrupted_ending
from botkit.store.cut_marks import CutMarks, CutReply

__all__ = ["CutReplyMarker", "EditOne"]

log = logging.getLogger(__name__)

# Edit the last platform message of a cut reply to this text.
EditOne = Callable[[CutReply, str], Awaitable[None]]


class CutReplyMarker:
    """Marks one bot's cut replies: edit(cut, text) puts the marked text in the message.

    An error of a kind in gives_up (the platform's refusal, a malformed reference) means that
    message cannot be marked: logged, and the reply is forgotten. Any other error (the
    database, the network) leaves it waiting for the next round.
    """

    def __init__(
        self,
        marks: CutMarks,
        platform: str,
        bot_prefix: str,
        edit: EditOne,
        *,
        max_length: int,
        gives_up: tuple[type[Exception], ...],
        interval: float,
    ) -> None:
        self._marks = marks
        self._platform = platform
        self._bot_prefix = bot_prefix  # "BOT/": the keys of this bot's chats
        self._edit = edit
        self._max_length = max_length
        self._gives_up = gives_up
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def _mark(self, cut: CutReply) -> None:
        """End the last message of a reply a crash cut with the interrupted mark."""
        try:
            await self._edit(cut, interrupted_ending(cut.content, self._max_length))
        except self._gives_up as exc:
            log.warning("%s: could not mark a cut reply: %s", self._platform, exc)

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

"""A fair scheduler of generations: a fixed number of slots per backend, fair across chats.

A backend runs at most its `max_parallel` generations at once (llama.cpp: its batched slots,
`[backends.NAME] parallel`; Ollama and OpenAI-compatible servers: the requests sent at once);
a chat that queues ten messages must not make every other chat wait for all ten. Each waiting
job gets a round: a chat's first waiting job is in the current round, its next ones in the
rounds after. The lowest round goes first (in order of arrival within a round), so every
chat's first message is answered before anyone's second, whenever it arrived. A chat's
rounds are forgotten when its backlog is empty.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

__all__ = ["FairScheduler"]


@dataclass(order=True)
class _Job:
    round: int
    seq: int
    chat: str = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


class _Lane:
    """The slots of one backend and the jobs waiting for them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.active = 0
        self.heap: list[_Job] = []
        self.current_round = 0
        self.next_round: dict[str, int] = {}
        self.backlog: dict[str, int] = {}  # waiting or running jobs per chat
        self._seq = itertools.count()

    def waiting(self) -> int:
        return sum(1 for job in self.heap if not job.future.done())

    def round_for(self, chat: str) -> int:
        return max(self.current_round, self.next_round.get(chat, 0))

    def enter(self, chat: str) -> int:
        """Give chat its next round (and count it in the chat's backlog)."""
        round_ = self.round_for(chat)
        self.next_round[chat] = round_ + 1
        self.backlog[chat] = self.backlog.get(chat, 0) + 1
        return round_

    def leave(self, chat: str) -> None:
        self.backlog[chat] -= 1
        if not self.backlog[chat]:
            del self.backlog[chat]
            del self.next_round[chat]  # an idle chat starts in the current round next time

    def push(self, chat: str, future: asyncio.Future[None]) -> None:
        heapq.heappush(self.heap, _Job(self.enter(chat), next(self._seq), chat, future))

    def dispatch(self) -> None:
        while self.active < self.capacity and self.heap:
            job = heapq.heappop(self.heap)
            if job.future.done():  # its waiter was cancelled (and has left already)
                continue
            self.current_round = job.round
            job.future.set_result(None)
            self.active += 1

    def ahead_of(self, chat: str) -> int:
        """Generations that must start or end before a new job of chat can start."""
        round_ = self.round_for(chat)
        before = sum(1 for job in self.heap if job.round <= round_ and not job.future.done())
        return max(0, self.active + before - self.capacity + 1)


class FairScheduler:
    """Hands out generation slots per backend, fairly across chats."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}
        self._changed = asyncio.Condition()

    def _lane(self, backend: str, capacity: int) -> _Lane:
        lane = self._lanes.get(backend)
        if lane is None:
            lane = self._lanes[backend] = _Lane(capacity)
        return lane

    def ahead_of(self, backend: str, chat: str) -> int:
        """How many generations would run on backend before a new one from chat starts."""
        lane = self._lanes.get(backend)
        return 0 if lane is None else lane.ahead_of(chat)

    def queued(self, backend: str) -> int:
        """Generations waiting for a slot on backend."""
        lane = self._lanes.get(backend)
        return 0 if lane is None else lane.waiting()

    async def wait_until_queued(self, backend: str, count: int) -> None:
        """Wait until at least count generations wait on backend (for tests and tools)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.queued(backend) >= count)

    @asynccontextmanager
    async def slot(self, backend: str, capacity: int, chat: str) -> AsyncIterator[None]:
        """Hold one of backend's slots for the duration of the block."""
        lane = self._lane(backend, capacity)
        if lane.active < lane.capacity and not lane.waiting():
            lane.current_round = lane.enter(chat)
            lane.active += 1
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            lane.push(chat, future)
            try:
                async with self._changed:
                    self._changed.notify_all()
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    lane.active -= 1  # granted just as we were cancelled: pass it on
                else:
                    future.cancel()
                lane.leave(chat)
                lane.dispatch()
                raise
        try:
            yield
        finally:
            lane.active -= 1
            lane.leave(chat)
            lane.dispatch()

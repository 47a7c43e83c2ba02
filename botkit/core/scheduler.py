"""A fair scheduler of generations: a fixed number of slots per backend, round-robin by chat.

llama.cpp runs one generation at a time per model; a chat that queues ten messages must not
make every other chat wait for all ten. Waiting chats are served in rotation, one job each.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["FairScheduler"]


class _Lane:
    """The slots of one backend and the chats waiting for them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.active = 0
        # Rotation order: the first chat is served next, then moves to the back.
        self.waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self.last_served: str | None = None

    def dispatch(self) -> None:
        while self.active < self.capacity and self.waiting:
            chat = next(iter(self.waiting))
            if chat == self.last_served and len(self.waiting) > 1:
                # It was just served: the others come first.
                self.waiting.move_to_end(chat)
                chat = next(iter(self.waiting))
            queue = self.waiting[chat]
            future = queue.popleft()
            if queue:
                self.waiting.move_to_end(chat)
            else:
                del self.waiting[chat]
            if future.done():  # its waiter was cancelled
                continue
            future.set_result(None)
            self.active += 1
            self.last_served = chat

    def forget(self, chat: str, future: asyncio.Future[None]) -> None:
        queue = self.waiting.get(chat)
        if queue is not None and future in queue:
            queue.remove(future)
            if not queue:
                del self.waiting[chat]

    def ahead_of(self, chat: str) -> int:
        """Generations that must start or end before chat's next one can start."""
        order = list(self.waiting)
        if len(order) > 1 and order[0] == self.last_served:
            order.append(order.pop(0))  # as dispatch() will serve them
        before = order.index(chat) if chat in order else len(order)
        return max(0, self.active + before - self.capacity + 1)


class FairScheduler:
    """Hands out generation slots per backend, round-robin across chats."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}

    def _lane(self, backend: str, capacity: int) -> _Lane:
        lane = self._lanes.get(backend)
        if lane is None:
            lane = self._lanes[backend] = _Lane(capacity)
        return lane

    def ahead_of(self, backend: str, chat: str) -> int:
        """How many generations would run on backend before one from chat starts."""
        lane = self._lanes.get(backend)
        return 0 if lane is None else lane.ahead_of(chat)

    def queued(self, backend: str) -> int:
        """Generations waiting for a slot on backend."""
        lane = self._lanes.get(backend)
        return 0 if lane is None else sum(len(q) for q in lane.waiting.values())

    @asynccontextmanager
    async def slot(self, backend: str, capacity: int, chat: str) -> AsyncIterator[None]:
        """Hold one of backend's slots for the duration of the block."""
        lane = self._lane(backend, capacity)
        if lane.active < lane.capacity and not lane.waiting:
            lane.active += 1
            lane.last_served = chat
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            lane.waiting.setdefault(chat, deque()).append(future)
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    lane.active -= 1  # granted just as we were cancelled: pass it on
                    lane.dispatch()
                else:
                    lane.forget(chat, future)
                raise
        try:
            yield
        finally:
            lane.active -= 1
            lane.dispatch()
